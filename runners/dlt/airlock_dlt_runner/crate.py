"""ro-crate-metadata.json, made by the airlock binary itself:

    airlock rocrate build DIR --datasource FILE --action FILE --extras FILE

so every runner's crate has the same form (src/rocrate/rocrate.h). The
action and extras files are written to the run's private temporary
directory, never into DIR.

Which airlock: $AIRLOCK_BIN if set, else `airlock` on $PATH (the image has
/usr/local/bin/airlock), else bin/airlock of the repository this package
sits in (runners/dlt/airlock_dlt_runner -> ../../../bin/airlock), which is
what a developer's checkout has after `make`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

from .errors import RunnerError, one_line

REPO_BIN = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "bin",
                                         "airlock"))


def find_airlock() -> str:
    env = os.environ.get("AIRLOCK_BIN")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise RunnerError(f"$AIRLOCK_BIN {env} is not an executable file (it should be the airlock binary, used "
                              "for `airlock rocrate build`)")
        return env
    found = shutil.which("airlock")
    if found:
        return found
    if os.path.isfile(REPO_BIN) and os.access(REPO_BIN, os.X_OK):
        return REPO_BIN
    raise RunnerError("cannot find the airlock binary, which writes ro-crate-metadata.json: set $AIRLOCK_BIN or put "
                      "airlock on $PATH")


def build(airlock: str, out_dir: str, datasource_path: str, action: dict, extras: dict, tmp: str) -> None:
    action_path = os.path.join(tmp, "action.json")
    extras_path = os.path.join(tmp, "extras.json")
    for path, doc in ((action_path, action), (extras_path, extras)):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
    try:
        p = subprocess.run([airlock, "rocrate", "build", out_dir, "--datasource", datasource_path,
                            "--action", action_path, "--extras", extras_path],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    except OSError as e:
        raise RunnerError(f"cannot run {airlock} rocrate build: {e.strerror}") from None
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {p.returncode}"
        raise RunnerError(f"cannot write ro-crate-metadata.json: {one_line(why)}")
