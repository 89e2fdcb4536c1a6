"""Errors a data engineer can act on, and the guard that keeps secrets out of them.

Every failure the runner reports is a RunnerError whose message is one line
naming what was wrong and what to do. Messages that come from libraries
(drivers, SQLAlchemy, dlt, pyarrow) pass through `redact` before they are
printed or written into the RO-Crate: every credential value the job was
given, in plain and percent-encoded form, is replaced by '***', and the
message is folded onto one line and cut to a readable length.
"""
from __future__ import annotations

import re
import urllib.parse

MAX_MESSAGE = 600
# Shorter values are not replaced: masking every "a" in a message would make
# it unreadable, and such a password is no secret anyway.
MIN_SECRET_LEN = 3


class RunnerError(Exception):
    """A failure with a message for a data engineer (never a secret)."""


class UsageError(Exception):
    """Bad command-line use: exit status 2."""


class Redactor:
    """Remembers the job's secrets and removes them from text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, value: str | None) -> None:
        if not value or len(value) < MIN_SECRET_LEN:
            return
        self._secrets.add(value)
        for form in (urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)):
            if form != value:
                self._secrets.add(form)

    def __call__(self, text: str) -> str:
        # Longest first, so a secret containing another is masked whole.
        for s in sorted(self._secrets, key=len, reverse=True):
            if s in text:
                text = text.replace(s, "***")
        return text


REDACT = Redactor()


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """Redacted, whitespace folded to single spaces, at most `limit` characters."""
    text = " ".join(REDACT(str(text)).split())
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def describe_exception(exc: BaseException) -> str:
    """The useful part of a library exception, on one line, without secrets.

    SQLAlchemy wraps driver errors as "(driver.Error) text [SQL: ...]
    (Background on this error at: ...)": keep the driver's own text (the
    statement is ours and the link helps nobody at 3 a.m.)."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None and str(orig).strip() else str(exc)
    for marker in ("\n[SQL:", "[SQL:", "(Background on this error at:"):
        cut = text.find(marker)
        if cut > 0:
            text = text[:cut]
    # dlt wraps a resource's error in "In processing pipe `t`: extraction of
    # resource `t` in `generator` `table_rows` caused an exception: <error>".
    text = re.sub(r"^In processing pipe `[^`]*`: extraction of resource `[^`]*` in `[^`]*` `[^`]*` caused an "
                  r"exception: ", "", text.strip())
    text = text.strip() or type(exc).__name__
    return one_line(text)
