"""A real kube-apiserver + etcd for tests, started the way controller-runtime's
envtest starts them: no controllers, no kubelet, token authentication, RBAC.

    env = KubeEnv(bin_dir, users={"operator": KubeUser(
        "system:serviceaccount:airlock:airlock-operator",
        ["system:serviceaccounts", "system:serviceaccounts:airlock", "system:authenticated"])})
    env.start()
    env.apply_crds(REPO / "deploy" / "crds")
    env.kubectl("get", "awds", "-A")
    env.kubectl("auth", "can-i", "list", "awds", user="operator", check=False)
    env.kubeconfig("operator")     # path of a kubeconfig for that identity
    env.restart_apiserver()        # same port, same etcd, same serving cert
    env.compact_etcd()             # compact at the current revision: old watches get 410
    env.stop()

The binaries come from scripts/kube-tools.sh (see find_tools()); everything
else (etcd data, certificates, tokens, kubeconfigs, logs) lives in one
temporary directory, removed by stop() unless AIRLOCK_KUBE_KEEP=1.
"""
from __future__ import annotations

import base64
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
KUBE_TOOLS = REPO / "scripts" / "kube-tools.sh"

ADMIN = "admin"


class KubeEnvError(RuntimeError):
    """The test control plane could not be built, started or used."""


@dataclass
class KubeUser:
    """One identity in the token file: a user name and its groups."""
    name: str
    groups: list[str] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(24))


def find_tools(timeout: float = 3600) -> Path:
    """Return the directory holding kube-apiserver, kubectl, etcd and helm.

    $AIRLOCK_KUBE_BIN wins if set; otherwise scripts/kube-tools.sh builds them
    (minutes, once per version) or finds them in its cache (instant)."""
    override = os.environ.get("AIRLOCK_KUBE_BIN")
    if override:
        bin_dir = Path(override)
    else:
        proc = subprocess.run(["bash", str(KUBE_TOOLS)], stdout=subprocess.PIPE,
                              stderr=None, text=True, timeout=timeout)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise KubeEnvError(f"{KUBE_TOOLS} failed (exit {proc.returncode}); "
                               "its messages are above")
        bin_dir = Path(lines[-1])
    for tool in ("kube-apiserver", "kubectl", "etcd"):
        if not os.access(bin_dir / tool, os.X_OK):
            raise KubeEnvError(f"{bin_dir / tool} missing: run scripts/kube-tools.sh "
                               "or fix AIRLOCK_KUBE_BIN")
    return bin_dir


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: UndefinedBehaviorSanitizer")


def sanitizer_report(log: Path, context: int = 4000) -> str:
    """The first sanitizer report (ASan, LSan, UBSan) in a process's log, or ''."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    hits = [text.find(m) for m in SANITIZER_MARKERS if m in text]
    if not hits:
        return ""
    start = max(0, min(hits) - 200)
    return text[start:start + context]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """Run in the child: get SIGTERM when the test process dies, so a killed
    pytest leaves no etcd or kube-apiserver behind."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _tail(path: Path, lines: int = 50) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Server:
    """One child process logging to a file."""

    def __init__(self, name: str, args: list[str], log: Path):
        self.name, self.args, self.log = name, args, log
        self.proc: subprocess.Popen | None = None

    def start(self):
        with open(self.log, "ab") as logf:
            logf.write(f"\n==== {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fail(self, why: str):
        raise KubeEnvError(f"{self.name} {why}; last 50 lines of {self.log}:\n{_tail(self.log)}")

    def stop(self, timeout: float = 20):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class KubeEnv:
    """etcd + kube-apiserver on free loopback ports, token auth, RBAC."""

    def __init__(self, bin_dir: Path | str | None = None,
                 users: dict[str, KubeUser] | None = None,
                 root: Path | str | None = None,
                 extra_apiserver_args: list[str] | None = None,
                 watch_cache: bool = True):
        self.bin = Path(bin_dir) if bin_dir else find_tools()
        self.users: dict[str, KubeUser] = {ADMIN: KubeUser("airlock-test-admin", ["system:masters"])}
        for key, user in (users or {}).items():
            if key == ADMIN:
                raise ValueError("the user key 'admin' is reserved")
            self.users[key] = user
        self._own_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="airlock-kube-"))
        self.extra_apiserver_args = list(extra_apiserver_args or [])
        # With the watch cache on (the default, as in a real cluster) the API
        # server answers watches from its own history, so compacting etcd does
        # NOT make an old-resourceVersion watch fail; with watch_cache=False
        # watches go to etcd and compact_etcd() yields the ERROR 410 event.
        if not watch_cache:
            self.extra_apiserver_args.append("--watch-cache=false")
        self.etcd_port = self.etcd_peer_port = self.port = 0
        self.etcd: _Server | None = None
        self.apiserver: _Server | None = None

    # ---- paths and addresses ------------------------------------------------
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def cert_dir(self) -> Path:
        return self.root / "certs"

    @property
    def ca_file(self) -> Path:
        """The apiserver's self-generated serving certificate bundle (its own
        CA and the serving cert): what clients trust."""
        return self.cert_dir / "apiserver.crt"

    def token(self, user: str = ADMIN) -> str:
        return self.users[user].token

    def kubeconfig(self, user: str = ADMIN) -> Path:
        return self.root / f"kubeconfig-{user}"

    @property
    def etcd_log(self) -> Path:
        return self.root / "etcd.log"

    @property
    def apiserver_log(self) -> Path:
        return self.root / "kube-apiserver.log"

    # ---- lifecycle ------------------------------------------------------------
    def start(self, timeout: float = 90):
        try:
            self._prepare()
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
            self._write_kubeconfigs()
        except BaseException:
            self.stop(keep=True)
            raise
        return self

    def stop(self, keep: bool | None = None):
        if self.apiserver:
            self.apiserver.stop()
        if self.etcd:
            self.etcd.stop()
        if keep is None:
            keep = os.environ.get("AIRLOCK_KUBE_KEEP") == "1"
        if self._own_root and not keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def restart_apiserver(self, timeout: float = 90, down_seconds: float = 0):
        """Stop the API server and start it again on the same port, against the
        same etcd, with the same serving certificate and tokens."""
        if self.apiserver is None:
            raise KubeEnvError("restart_apiserver() before start()")
        self.apiserver.stop()
        if down_seconds:
            time.sleep(down_seconds)
        self.apiserver.start()
        self._wait_ready(self.apiserver, f"{self.server}/readyz", timeout, tls=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- internals ----------------------------------------------------------------
    def _prepare(self):
        self.root.mkdir(parents=True, exist_ok=True)
        self.cert_dir.mkdir(exist_ok=True)
        self.etcd_port, self.etcd_peer_port, self.port = free_port(), free_port(), free_port()
        while len({self.etcd_port, self.etcd_peer_port, self.port}) < 3:
            self.port = free_port()
        key = self.root / "sa.key"
        pub = self.root / "sa.pub"
        for cmd in (["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                     "-out", str(key)],
                    ["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)]):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise KubeEnvError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
        # token,user,uid,"group1,group2"
        lines = []
        for user in self.users.values():
            for part in (user.token, user.name, *user.groups):
                if any(c in part for c in ',"\n'):
                    raise ValueError(f"user {user.name!r}: names, groups and tokens may not "
                                     "contain commas, quotes or newlines")
            lines.append(f'{user.token},{user.name},{user.name},"{",".join(user.groups)}"')
        tokens = self.root / "tokens.csv"
        tokens.write_text("\n".join(lines) + "\n")
        tokens.chmod(0o600)
        self.etcd = _Server("etcd", [
            str(self.bin / "etcd"),
            "--name", "default",
            "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", self.etcd_url,
            "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
            "--initial-cluster", f"default=http://127.0.0.1:{self.etcd_peer_port}",
            "--unsafe-no-fsync",          # as envtest: test data, speed over durability
            "--log-level", "warn",
        ], self.etcd_log)
        self.apiserver = _Server("kube-apiserver", [
            str(self.bin / "kube-apiserver"),
            "--etcd-servers", self.etcd_url,
            "--cert-dir", str(self.cert_dir),
            "--secure-port", str(self.port),
            "--bind-address", "127.0.0.1",
            "--advertise-address", "127.0.0.1",
            "--service-cluster-ip-range", "10.0.0.0/24",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(pub),
            "--service-account-signing-key-file", str(key),
            "--token-auth-file", str(tokens),
            "--authorization-mode", "RBAC",
            "--allow-privileged=true",
            "--disable-admission-plugins", "ServiceAccount",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v", "1",
            *self.extra_apiserver_args,
        ], self.apiserver_log)

    def _start_etcd(self, timeout):
        self.etcd.start()
        self._wait_ready(self.etcd, f"{self.etcd_url}/health", timeout, tls=False)

    def _start_apiserver(self, timeout):
        self.apiserver.start()
        self._wait_ready(self.apiserver, f"{self.server}/readyz", timeout, tls=True)

    def _ssl_context(self):
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _wait_ready(self, server: _Server, url: str, timeout: float, tls: bool):
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not server.running():
                server.fail(f"exited with status {server.proc.returncode if server.proc else '?'}"
                            " while starting")
            try:
                if tls and not self.ca_file.exists():
                    raise OSError("serving certificate not written yet")
                req = urllib.request.Request(url)
                if tls:
                    req.add_header("Authorization", f"Bearer {self.token(ADMIN)}")
                ctx = self._ssl_context() if tls else None
                with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                    body = resp.read().decode(errors="replace")
                    if resp.status == 200 and ("ok" in body or '"health":"true"' in body):
                        return
                    last = f"{resp.status} {body[:200]}"
            except urllib.error.HTTPError as e:
                last = f"{e.code} {e.read()[:300].decode(errors='replace')}"
            except (OSError, ssl.SSLError) as e:
                last = str(e)
            time.sleep(0.25)
        server.fail(f"not ready at {url} after {timeout:.0f} s (last answer: {last})")

    def _write_kubeconfigs(self):
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        for key, user in self.users.items():
            cfg = {
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "airlock-test", "cluster": {
                    "server": self.server, "certificate-authority-data": ca}}],
                "users": [{"name": key, "user": {"token": user.token}}],
                "contexts": [{"name": key, "context": {
                    "cluster": "airlock-test", "user": key, "namespace": "default"}}],
                "current-context": key,
            }
            path = self.kubeconfig(key)
            path.write_text(json.dumps(cfg, indent=2) + "\n")
            path.chmod(0o600)

    # ---- using it -----------------------------------------------------------------
    def kubectl(self, *args: str, user: str = ADMIN, input: str | None = None,
                check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run kubectl as `user`; returns the CompletedProcess (text). With
        check=True a non-zero exit raises KubeEnvError carrying stderr."""
        cmd = [str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig(user)),
               "--cache-dir", str(self.root / "kubectl-cache"), *args]
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True,
                              timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise KubeEnvError(f"kubectl {' '.join(args)} (as {user}) exited {proc.returncode}:\n"
                               f"{proc.stderr.strip()}")
        return proc

    def api(self, method: str, path: str, body: bytes | str | dict | None = None,
            content_type: str = "application/json", user: str = ADMIN,
            timeout: float = 30) -> tuple[int, bytes]:
        """One raw HTTPS request to the API server as `user`; returns
        (status, body) for any HTTP status, raises KubeEnvError if unreachable."""
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        req = urllib.request.Request(f"{self.server}{path}", data=body, method=method,
                                     headers={"Authorization": f"Bearer {self.token(user)}",
                                              "Content-Type": content_type,
                                              "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl_context()) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (OSError, ssl.SSLError) as e:
            raise KubeEnvError(f"{method} {self.server}{path}: {e}") from e

    def kubectl_json(self, *args: str, user: str = ADMIN):
        return json.loads(self.kubectl(*args, "-o", "json", user=user).stdout)

    def helm(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run helm against this API server as admin."""
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig(ADMIN)),
                   HELM_CACHE_HOME=str(self.root / "helm" / "cache"),
                   HELM_CONFIG_HOME=str(self.root / "helm" / "config"),
                   HELM_DATA_HOME=str(self.root / "helm" / "data"))
        proc = subprocess.run([str(self.bin / "helm"), *args], capture_output=True, text=True,
                              timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise KubeEnvError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.strip()}")
        return proc

    def apply_crds(self, crd_dir: Path | str, timeout: float = 60) -> list[str]:
        """kubectl apply -f every CRD in crd_dir, then wait until each is
        Established (served). Returns the CRD names."""
        crd_dir = Path(crd_dir)
        names = []
        for path in sorted(crd_dir.glob("*.y*ml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    names.append(doc["metadata"]["name"])
        if not names:
            raise KubeEnvError(f"no CustomResourceDefinition in {crd_dir}")
        self.kubectl("apply", "-f", str(crd_dir))
        self.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s",
                     *[f"crd/{n}" for n in names], timeout=timeout + 30)
        return names

    # ---- etcd ---------------------------------------------------------------------------
    def _etcd_post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(f"{self.etcd_url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise KubeEnvError(f"etcd {path} refused: {e.code} {e.read()[:300]!r}") from e

    def etcd_revision(self) -> int:
        """The current etcd revision (from a range read's header)."""
        out = self._etcd_post("/v3/kv/range", {"key": base64.b64encode(b"\0").decode()})
        return int(out["header"]["revision"])

    def compact_etcd(self, revision: int | None = None, physical: bool = True) -> int:
        """Compact etcd's history up to `revision` (default: the current one)
        through etcd's v3 HTTP/JSON gateway. A watch started from an older
        resourceVersion then gets 410 Gone. Returns the revision compacted."""
        if revision is None:
            revision = self.etcd_revision()
        self._etcd_post("/v3/kv/compaction", {"revision": str(revision), "physical": physical})
        return revision
