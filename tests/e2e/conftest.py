"""Fixtures for end-to-end tests: a real `airlock serve` per test, driven
through its CLI and HTTP API exactly as a user would."""
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("AIRLOCK_BIN", str(REPO / "bin" / "airlock"))


def pytest_configure(config):
    if not os.access(BIN, os.X_OK):
        raise pytest.UsageError(
            f"airlock binary {BIN} not found: run `make` first or set AIRLOCK_BIN")


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: UndefinedBehaviorSanitizer")


def sanitizer_report(log: Path, context: int = 4000) -> str:
    """The first sanitizer report in a server's log, or ''."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    hits = [text.find(m) for m in SANITIZER_MARKERS if m in text]
    if not hits:
        return ""
    start = max(0, min(hits) - 200)
    return text[start:start + context]


def stop_server(proc, log: Path, what: str, sig=signal.SIGTERM):
    """Stops a server process started by a fixture (None: already stopped).
    A SIGTERM stop must end cleanly (exit 0, within 30 s); under any stop, a
    sanitizer report in its log (ASan, LSan at exit, UBSan) fails the test
    that owns the server."""
    problem = None
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            problem = f"{what} did not stop within 30 s of signal {sig}"
        if problem is None and sig == signal.SIGTERM and proc.returncode != 0:
            problem = f"{what} exited {proc.returncode} on SIGTERM"
    if proc and proc.stdout:
        proc.stdout.close()
    report = sanitizer_report(log)
    if report:
        problem = (problem + "; " if problem else "") + "sanitizer report in its log:\n" + report
    if problem:
        raise AssertionError(f"{problem}\n(log: {log})")


class Airlock:
    """One running embedded airlock with its own data directory."""

    def __init__(self, root: Path, config_text: str | None = None):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = root / "var"
        self.config = None
        if config_text is not None:
            self.config = root / "airlock.yaml"
            self.config.write_text(config_text)
        self.proc = None
        self.url = None
        self.log = root / "serve.log"
        self.logins: dict[str, Path] = {}
        self.passwords: dict[str, str] = {}

    # -- process --------------------------------------------------------
    def start(self, timeout=15):
        args = [BIN, "serve", "--data-dir", str(self.data), "--listen",
                "127.0.0.1:0" if self.url is None else self.url.split("//")[1].rstrip("/")]
        if self.config:
            args += ["--config", str(self.config)]
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=logf,
                                     stdin=subprocess.DEVNULL, text=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"airlock serve exited {self.proc.returncode}: "
                                       f"{self.log.read_text()[-2000:]}")
                continue
            m = re.search(r"Airlock is running at (http://\S+?)/?$", line.strip())
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError("airlock serve did not start in time")
        # Wait for readiness (first list reconciled).
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise RuntimeError("airlock serve never became ready")

    def stop(self, sig=signal.SIGTERM):
        proc, self.proc = self.proc, None
        stop_server(proc, self.log, "airlock serve", sig)

    def kill9(self):
        self.stop(signal.SIGKILL)

    # -- people ------------------------------------------------------------
    @property
    def admin_password(self):
        return (self.data / "initial-admin-password").read_text().strip()

    def cli(self, *args, user="admin", input=None, check=True, timeout=120):
        env = dict(os.environ)
        env["AIRLOCK_CONFIG"] = str(self.root / f"cli-{user}.json")
        env.pop("AIRLOCK_SERVER", None)
        env.pop("AIRLOCK_TOKEN", None)
        p = subprocess.run([BIN, *map(str, args)], env=env, input=input, text=True,
                           capture_output=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"airlock {' '.join(map(str, args))} exited {p.returncode}\n"
                                 f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def login(self, user="admin", password=None):
        password = password or (self.admin_password if user == "admin" else self.passwords[user])
        self.cli("login", "--server", self.url, "--user", user, "--password-stdin",
                 user=user, input=password + "\n")
        self.logins[user] = self.root / f"cli-{user}.json"

    def token(self, user="admin"):
        if user not in self.logins:
            self.login(user)
        return json.loads(self.logins[user].read_text())["token"]

    def add_user(self, name, *roles, workspaces=()):
        if "admin" not in self.logins:
            self.login("admin")
        password = f"{name}-password-123"
        args = ["user", "add", name, "--password-stdin"]
        for r in roles:
            args += ["--role", r]
        self.cli(*args, input=password + "\n")
        self.passwords[name] = password
        for ws in workspaces:
            self.cli("workspace", "add-member", ws, name)
        self.login(name, password)
        return name

    def api(self, method, path, user="admin", **kw):
        headers = kw.pop("headers", {})
        if user is not None:
            headers["Authorization"] = "Bearer " + self.token(user)
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def ds(self, name, user="admin"):
        r = self.api("GET", f"/api/v1/datasources/{name}", user=user)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_stage(self, name, stage, timeout=60, user="admin"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = self.ds(name, user)
            st = last.get("status", {})
            if st.get("stage") == stage:
                return last
            if st.get("stage") in ("Failed", "Purged", "Published") and stage != st.get("stage"):
                raise AssertionError(f"{name} reached {st.get('stage')}: {st.get('message')}")
            time.sleep(0.1)
        raise AssertionError(f"{name} did not reach {stage}; last status {last.get('status')}")

    def audit(self):
        r = self.api("GET", "/api/v1/audit?limit=10000")
        assert r.status_code == 200, r.text
        return r.json()["items"]


@pytest.fixture
def airlock_factory(tmp_path):
    made = []

    def make(config_text=None):
        a = Airlock(tmp_path / f"airlock{len(made)}", config_text)
        made.append(a)
        return a.start()

    yield make
    for a in made:
        a.stop()


@pytest.fixture
def airlock(airlock_factory):
    return airlock_factory()


def make_source_db(path: Path, rows=100):
    """A SQLite source with awkward values: quotes, commas, newlines, UTF-8, NULLs."""
    con = sqlite3.connect(path)
    con.execute("create table patients(id integer primary key, name text, dob text, weight real)")
    con.executemany("insert into patients values(?,?,?,?)",
                    [(i, f'Pat "{i}", Ñoño\nline2' if i % 7 == 0 else f"Person {i}",
                      None if i % 5 == 0 else "1980-01-02", i * 1.5) for i in range(1, rows + 1)])
    con.execute("create table attendances(id integer, patient_id integer, attended text)")
    con.executemany("insert into attendances values(?,?,?)",
                    [(i, i % rows + 1, f"2024-03-{i % 28 + 1:02d}") for i in range(1, 51)])
    con.commit()
    con.close()
    return path


def datasource_yaml(name, db, tables=("patients", "attendances"), conn_type="sqlite", extra_conn=""):
    objects = "".join(f"""  - table:
      name: {t}
      connection: source
""" for t in tables)
    return f"""apiVersion: xlscsde.nhs.uk/v1
kind: AnalyticsWorkspaceDataSource
metadata:
  name: {name}
  labels:
    xlscsde.nhs.uk/type: import
spec:
  type: Import
  publisher:
    organisation: NHS Greater Manchester ICB
    contact:
      name: Shaun Turner
      role: AWMS Developer
  project:
    id: d4e6
  displayName: NWSDE Data Engineering Team Sample Dataset - GM Attendances
  description: |
    Contains two sample tables.
    All data is synthetic.
  license: |
    This sample data may ONLY be used for testing.
  connections:
  - type: {conn_type}
    name: source
    url: sqlite://{db}
{extra_conn}  objects:
{objects}"""


@pytest.fixture
def workspace(airlock):
    """A workspace with a data engineer and two approvers."""
    airlock.login("admin")
    airlock.cli("workspace", "create", "advanced-generic-workspace", "--display-name", "Advanced")
    airlock.add_user("eng", "data-engineer", workspaces=["advanced-generic-workspace"])
    airlock.add_user("appr", "approver")
    airlock.add_user("appr2", "approver")
    return "advanced-generic-workspace"
