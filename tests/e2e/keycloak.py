"""A real Keycloak for end-to-end tests: one server per pytest session.

    from keycloak import keycloak  # noqa: F401  (the session fixture)

    def test_x(keycloak):
        keycloak.issuer                      # http://127.0.0.1:<port>/realms/airlock
        keycloak.token("rita")["access_token"]   # password grant, test client only
        keycloak.client_secret               # of the confidential client "airlock"

The distribution comes from scripts/keycloak.sh (Maven, cached by version).
Each session runs a private copy of it in a temporary directory with a fresh
data directory, into which deploy/keycloak/realm-airlock.json is imported
(`kc.sh start-dev --import-realm`), on free loopback ports, with the health
endpoints on the management port; the fixture waits for /health/ready.

Start time: Keycloak "augments" its Quarkus build the first time it runs in
dev mode (about 15 s on two cores). The first session keeps an augmented copy
next to the download (<cache>/keycloak/<version>-dev/), and later sessions
copy that one and start in about 15 s instead of 30. The JVM heap is capped
at 512 MiB (KC_HEAP below); the machine may be small and shared.

The hostname is pinned to http://127.0.0.1:<port>, so tokens carry the same
issuer whether a client (or a browser) talks to 127.0.0.1 or localhost.

The module keeps one server per process and counts its users, so test
modules that each import the fixture still share one Keycloak; it stops when
the last of them is finalised at the end of the session.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
REALM_FILE = REPO / "deploy" / "keycloak" / "realm-airlock.json"
REALM = "airlock"
CLIENT_ID = "airlock"
TEST_CLIENT = "airlock-cli"
START_TIMEOUT = float(os.environ.get("AIRLOCK_KEYCLOAK_START_TIMEOUT", "240"))
KC_HEAP = "-Xms64m -Xmx512m"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def java_home() -> str | None:
    """A JDK Keycloak 26 supports: $AIRLOCK_KEYCLOAK_JAVA_HOME, else Debian's
    OpenJDK 17, else whatever `java` is on PATH (None)."""
    env = os.environ.get("AIRLOCK_KEYCLOAK_JAVA_HOME")
    if env:
        return env
    for cand in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-21-openjdk-amd64"):
        if os.access(os.path.join(cand, "bin", "java"), os.X_OK):
            return cand
    return None


def realm_users() -> dict[str, dict]:
    """The test realm's users: name -> {password, roles, workspaces}, read from
    the realm file so tests and realm cannot drift apart."""
    realm = json.loads(REALM_FILE.read_text())
    out = {}
    for u in realm["users"]:
        roles = set(u.get("realmRoles", [])) | set(u.get("clientRoles", {}).get(CLIENT_ID, []))
        out[u["username"]] = {
            "password": next(c["value"] for c in u["credentials"] if c["type"] == "password"),
            "roles": roles,
            "workspaces": {g.rsplit("/", 1)[1] for g in u.get("groups", [])
                           if g.startswith("/jupyter-workspaces/")},
        }
    return out


def client_secret() -> str:
    realm = json.loads(REALM_FILE.read_text())
    return next(c["secret"] for c in realm["clients"] if c["clientId"] == CLIENT_ID)


class Keycloak:
    def __init__(self):
        self.dir: Path | None = None
        self.home: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.mgmt_port: int | None = None
        self.log: Path | None = None
        self.start_seconds: float | None = None
        self.version: str | None = None
        self._admin_password = secrets.token_hex(16)

    # -- where things are ------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.base}/realms/{REALM}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/certs"

    @property
    def client_id(self) -> str:
        return CLIENT_ID

    @property
    def client_secret(self) -> str:
        return client_secret()

    @property
    def users(self) -> dict[str, dict]:
        return realm_users()

    # -- process -----------------------------------------------------------------
    def _fetch(self) -> Path:
        p = subprocess.run([str(REPO / "scripts" / "keycloak.sh")], capture_output=True, text=True,
                           timeout=1800)
        if p.returncode != 0:
            raise RuntimeError(f"scripts/keycloak.sh failed ({p.returncode}): {p.stderr[-3000:]}")
        return Path(p.stdout.strip().splitlines()[-1])

    def start(self) -> "Keycloak":
        dist = self._fetch()
        self.version = dist.name
        prepared = dist.parent / f"{self.version}-dev"
        source = prepared if (prepared / ".prepared").exists() else dist
        self.dir = Path(tempfile.mkdtemp(prefix="airlock-keycloak-"))
        self.home = self.dir / "keycloak"
        shutil.copytree(source, self.home, symlinks=True,
                        ignore=shutil.ignore_patterns("data", ".prepared", ".complete"))
        (self.home / "data" / "import").mkdir(parents=True)
        shutil.copy(REALM_FILE, self.home / "data" / "import" / "realm-airlock.json")
        self.port, self.mgmt_port = free_port(), free_port()
        while self.mgmt_port == self.port:
            self.mgmt_port = free_port()
        env = dict(os.environ)
        jh = java_home()
        if jh:
            env["JAVA_HOME"] = jh
        env["JAVA_OPTS_KC_HEAP"] = KC_HEAP
        env.pop("JAVA_OPTS", None)
        env.pop("KC_DB", None)
        env["KC_BOOTSTRAP_ADMIN_USERNAME"] = "admin"
        env["KC_BOOTSTRAP_ADMIN_PASSWORD"] = self._admin_password
        self.log = self.dir / "keycloak.log"
        t0 = time.monotonic()
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [str(self.home / "bin" / "kc.sh"), "start-dev", "--import-realm",
                 "--http-host=127.0.0.1", f"--http-port={self.port}",
                 f"--hostname=http://127.0.0.1:{self.port}",
                 "--health-enabled=true", f"--http-management-port={self.mgmt_port}",
                 "--log-level=WARN,org.keycloak.services:INFO,io.quarkus:INFO"],
                cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        if source is dist:
            self._keep_prepared(prepared)
        return self

    def _wait_ready(self, t0: float):
        url = f"http://127.0.0.1:{self.mgmt_port}/health/ready"
        while time.monotonic() - t0 < START_TIMEOUT:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Keycloak exited {self.proc.returncode} while starting; log tail:\n"
                                   f"{self.log_tail()}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    # Ready means the realm import is done too; check it is there.
                    r = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=5)
                    if r.status_code == 200:
                        return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Keycloak was not ready after {START_TIMEOUT:.0f} s; log tail:\n{self.log_tail()}")

    def _keep_prepared(self, prepared: Path):
        """Keep our augmented copy (without data) for the next sessions. Best
        effort: another session may be doing the same; the lock and the rename
        make one of them win and the others skip."""
        lock_path = prepared.parent / f".lock-{prepared.name}"
        try:
            with open(lock_path, "w") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return
                if (prepared / ".prepared").exists():
                    return
                tmp = Path(tempfile.mkdtemp(prefix=f".{prepared.name}.", dir=prepared.parent))
                try:
                    shutil.copytree(self.home, tmp / "home", symlinks=True,
                                    ignore=shutil.ignore_patterns("data"))
                    (tmp / "home" / ".prepared").touch()
                    shutil.rmtree(prepared, ignore_errors=True)
                    os.rename(tmp / "home", prepared)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass  # the next session simply augments again

    def log_tail(self, n=4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except (OSError, AttributeError):
            return "(no log)"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            # kc.sh forwards TERM to the JVM; the group catches a relaunch too.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- tokens ------------------------------------------------------------------
    def token(self, user: str, password: str | None = None, client: str = TEST_CLIENT,
              scope: str = "openid") -> dict:
        """The token endpoint's answer for a password grant: the test clients
        (airlock-cli, airlock-cli-short, other-app) allow it, the confidential
        airlock client does not."""
        password = password or self.users[user]["password"]
        r = requests.post(self.token_endpoint, timeout=30, data={
            "grant_type": "password", "client_id": client, "username": user,
            "password": password, "scope": scope})
        if r.status_code != 200:
            raise AssertionError(f"Keycloak refused a token for {user} via {client}: "
                                 f"{r.status_code} {r.text[:500]}")
        return r.json()

    def access_token(self, user: str, client: str = TEST_CLIENT) -> str:
        return self.token(user, client=client)["access_token"]

    def admin_token(self) -> str:
        """A token of the master realm's temporary admin (made for this
        session with a random password), for Keycloak's admin REST API."""
        r = requests.post(f"{self.base}/realms/master/protocol/openid-connect/token", timeout=30, data={
            "grant_type": "password", "client_id": "admin-cli", "username": "admin",
            "password": self._admin_password})
        if r.status_code != 200:
            raise AssertionError(f"Keycloak refused the admin login: {r.status_code} {r.text[:300]}")
        return r.json()["access_token"]

    def admin(self, method: str, path: str, **kw) -> requests.Response:
        """A call to /admin/realms/airlock<path> as the temporary admin."""
        headers = {"Authorization": "Bearer " + self.admin_token()}
        return requests.request(method, f"{self.base}/admin/realms/{REALM}{path}", headers=headers,
                                timeout=30, **kw)


_lock = threading.Lock()
_shared: Keycloak | None = None
_users = 0


def acquire() -> Keycloak:
    global _shared, _users
    with _lock:
        if _shared is None:
            _shared = Keycloak().start()
        _users += 1
        return _shared


def release():
    global _shared, _users
    with _lock:
        _users -= 1
        if _users <= 0 and _shared is not None:
            _shared.stop()
            _shared = None
            _users = 0


@pytest.fixture(scope="session")
def keycloak():
    kc = acquire()
    try:
        yield kc
    finally:
        release()
