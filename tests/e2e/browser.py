"""Runs a browser scenario (tests/browser/<name>.mjs: node + playwright-core
driving Debian's Chromium) against a real `airlock serve`, and turns its
report into assertions that name the failed step.

What is needed is installed by `scripts/bootstrap.sh test` (Debian's chromium,
playwright-core into ~/.cache/airlock/playwright-<version>); nothing is
downloaded here. Screenshots of every step go to
build/test-artifacts/browser/<release|sanitize>/<test>/NN-<who>-<step>.png
(or under $AIRLOCK_TEST_ARTIFACTS), with the scenario's report (result.json)
and node's stderr (node.log); the path is printed in the test output.
See docs/testing-browser.md."""
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import BIN, REPO

SCENARIOS = REPO / "tests" / "browser"
CHROMIUM = os.environ.get("AIRLOCK_CHROMIUM", "/usr/bin/chromium")
CACHE = Path(os.environ.get("AIRLOCK_CACHE", Path.home() / ".cache" / "airlock"))


def playwright_core() -> Path:
    """The playwright-core package at the version tests/browser/package.json pins."""
    pins = json.loads((SCENARIOS / "package.json").read_text())["dependencies"]
    version = pins["playwright-core"]
    pkg = CACHE / f"playwright-{version}" / "node_modules" / "playwright-core"
    missing = [what for what, ok in (
        ("node (Debian package nodejs)", shutil.which("node")),
        (f"{CHROMIUM} (Debian package chromium)", os.access(CHROMIUM, os.X_OK)),
        (f"playwright-core {version} in {pkg.parent.parent}", (pkg / "package.json").is_file()),
    ) if not ok]
    if missing:
        pytest.fail("browser tests need " + ", ".join(missing) +
                    ": run scripts/bootstrap.sh test (or make test)", pytrace=False)
    return pkg


def artifacts_dir(test_name: str) -> Path:
    """Stable per test and per binary, emptied at each run."""
    root = os.environ.get("AIRLOCK_TEST_ARTIFACTS")
    root = Path(root) if root else REPO / "build" / "test-artifacts"
    label = "sanitize" if "sanitize" in Path(BIN).resolve().parts else "release"
    d = root / "browser" / label / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


class ScenarioFailed(AssertionError):
    pass


def run_scenario(request, airlock, name, params, handlers=None, timeout=240):
    """Runs tests/browser/<name>.mjs against `airlock`; answers its "ask"
    lines with handlers[event](payload) -> dict; returns its report (a dict)
    when it passed, and fails the test naming the step otherwise."""
    handlers = handlers or {}
    pkg = playwright_core()
    out = artifacts_dir(request.node.name)
    # Printed past pytest's capture, so `pytest -q` shows where they are.
    capman = request.config.pluginmanager.getplugin("capturemanager")
    if capman:
        with capman.global_and_fixture_disabled():
            print(f"\n  browser artifacts: {out}", flush=True)
    else:
        print(f"\n  browser artifacts: {out}", flush=True)
    env = dict(os.environ, AIRLOCK_URL=airlock.url, AIRLOCK_ARTIFACTS=str(out),
               AIRLOCK_PLAYWRIGHT_CORE=str(pkg), AIRLOCK_CHROMIUM=CHROMIUM,
               AIRLOCK_PARAMS=json.dumps(params))
    log = open(out / "node.log", "wb")
    proc = subprocess.Popen(["node", str(SCENARIOS / f"{name}.mjs")], cwd=SCENARIOS, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    result = None
    handler_error = None
    others = []
    try:
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                others.append(line.rstrip())
                continue
            if "result" in msg:
                result = msg["result"]
            elif "ask" in msg:
                event = msg.pop("ask")
                try:
                    if event not in handlers:
                        raise KeyError(f"no Python handler for {event!r}")
                    reply = handlers[event](msg)
                except Exception as e:  # noqa: BLE001 - told to the scenario, then raised below
                    handler_error = handler_error or (event, e)
                    reply = {"error": f"{type(e).__name__}: {e}"}
                proc.stdin.write(json.dumps(reply) + "\n")
                proc.stdin.flush()
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    (out / "result.json").write_text(json.dumps(result, indent=2))
    stderr_tail = (out / "node.log").read_text(errors="replace")[-1500:]
    where = f"\n  screenshots and report: {out}\n  node stderr (tail):\n{stderr_tail}"
    if handler_error:
        event, e = handler_error
        raise ScenarioFailed(f"browser scenario {name}: the Python side of step '{event}' failed: "
                             f"{type(e).__name__}: {e}{where}") from e
    if timed_out.is_set():
        raise ScenarioFailed(f"browser scenario {name} did not finish in {timeout} s"
                             f" (last step: {_last_step(out)}){where}")
    if result is None:
        raise ScenarioFailed(f"browser scenario {name} exited {rc} without a report"
                             f" (last step: {_last_step(out)}); other output: {others[-5:]}{where}")
    if rc != 0 or not result["ok"]:
        problems = "".join(f"\n    {p['kind']} in step '{p['step']}' ({p['who']}, {p['url']}): {p['text']}"
                           for p in result["problems"])
        raise ScenarioFailed(f"browser scenario {name} failed at step {result['failedStep']}: "
                             f"{result['error']}{problems}{where}")
    assert result["steps"] and all(s["ok"] for s in result["steps"]), result["steps"]
    for s in result["steps"]:
        if s["screenshot"]:
            assert Path(s["screenshot"]).stat().st_size > 0, s
    return result


def _last_step(out: Path) -> str:
    steps = [ln for ln in (out / "node.log").read_text(errors="replace").splitlines() if ln.startswith("step ")]
    return steps[-1] if steps else "none started"
