"""`airlock frontend` (src/cli/cmd_frontend.c, src/web/uploader_route.c)
against a real kube-apiserver, with `airlock operator` and `airlock
uploader` as processes: the seed's "User -> Airlock Frontend -(proxies
request)-> Airlock Uploader Instance".

There is no kubelet: the test plays it. When the uploader Deployment's
replicas become 1 it starts `airlock uploader` on this machine (with the
proxy secret file and a temporary staging directory) and patches the
Deployment's status to readyReplicas=1. The frontend reaches it through
AIRLOCK_UPLOADER_URL_TEMPLATE pointed at 127.0.0.1.

People log in with the frontend's local accounts (bearer tokens from
/api/v1/login, and the login form for a session). Everything runs in the
namespace NS, not "default": the frontend is given it by AIRLOCK_NAMESPACE
(as the chart does), and its API must keep the custom resources there and
nowhere else. The module has an API server of its own.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from kubeenv import KubeEnv, free_port, sanitizer_report

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from tus_client import Tus, metadata  # noqa: E402

NS = "airlock-fe"
WS = "ws-kube"
SECRET = "frontend-to-uploader-shared-secret-0123"
# The operator's idle scale-down input (src/runtime/uploader_scale.h): the
# frontend writes SCALED_UP_AT when it wakes an uploader, ACTIVITY while it
# proxies to a running one.
ACTIVITY = "xlscsde.nhs.uk/last-activity"
SCALED_UP_AT = "xlscsde.nhs.uk/scaled-up-at"
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
CR_GROUP = "/apis/xlscsde.nhs.uk/v1"


def airlock_bin() -> Path:
    path = Path(os.environ.get("AIRLOCK_BIN") or REPO / "bin" / "airlock")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make`")
    proc = subprocess.run([str(path), "frontend", "--help"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{path} has no `frontend` command: run `make`\n{proc.stderr}")
    return path


def wait_for(what, fn, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_") and k != "KUBECONFIG"}
    env.update(extra)
    return env


class Proc:
    def __init__(self, args, log: Path, env, ready: str, timeout=30):
        self.log_path = log
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env)
        self.match = wait_for(f"{args[1]} to start", lambda: self._ready(ready), timeout=timeout)

    def _ready(self, pattern):
        if self.proc.poll() is not None:
            raise AssertionError(f"exited {self.proc.returncode}:\n{self.text()[-3000:]}")
        return re.search(pattern, self.text())

    def text(self):
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        report = sanitizer_report(self.log_path)
        if report:
            raise AssertionError(f"sanitizer report in {self.log_path}:\n{report}")
        return self.proc.returncode


class Kubelet(threading.Thread):
    """Plays the kubelet for one uploader Deployment: replicas 1 starts
    `airlock uploader`, and the Deployment then reports readyReplicas 1."""

    def __init__(self, kube: KubeEnv, binary: Path, name: str, root: Path, port: int):
        super().__init__(daemon=True)
        self.kube, self.binary, self.name, self.root, self.port = kube, binary, name, root, port
        self.vol = root / "vol"
        self.vol.mkdir(parents=True, exist_ok=True)
        self.uploader: Proc | None = None
        self.started = threading.Event()
        self.quit = threading.Event()

    def deployment(self):
        status, body = self.kube.api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{self.name}")
        assert status == 200, body
        return json.loads(body)

    def run(self):
        while not self.quit.is_set():
            try:
                if self.deployment()["spec"].get("replicas") == 1:
                    break
            except AssertionError:
                pass
            time.sleep(0.2)
        else:
            return
        self.start_pod()
        self.started.set()

    def start_pod(self):
        """The uploader process, then readyReplicas 1, as a kubelet would."""
        self.uploader = Proc([str(self.binary), "uploader", "--dir", str(self.vol), "--listen",
                              f"127.0.0.1:{self.port}", "--base-path", f"/uploads/{self.name}",
                              "--proxy-secret-file", str(self.root / "secret"), "--name", self.name],
                             # A log per start: Proc waits for the line in its own log.
                             self.root / f"uploader-{len(list(self.root.glob('uploader-*.log')))}.log",
                             clean_env(), r"running at http://")
        status, body = self.kube.api("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{self.name}/status",
                                     {"status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}},
                                     content_type="application/merge-patch+json")
        assert status == 200, body


class World:
    def __init__(self, kube: KubeEnv, binary: Path, root: Path):
        self.kube, self.binary, self.root = kube, binary, root
        (root / "secret").write_text(SECRET + "\n")
        (root / "secret").chmod(0o600)
        self.uploader_port = free_port()
        admin_kcfg = str(kube.kubeconfig())
        self.operator = Proc([str(binary), "operator", "--kubeconfig", admin_kcfg, "--namespace", NS,
                              "--watch-namespace", NS, "--metrics-listen", "127.0.0.1:0"],
                             root / "operator.log",
                             clean_env(AIRLOCK_STAGING_STORAGE_CLASS="airlock-staging", AIRLOCK_LOG_FORMAT="json"),
                             r"metrics listening on port (\d+)")
        # The namespace from the environment, as the chart gives it (the
        # admin kubeconfig's own namespace is "default").
        self.frontend = Proc([str(binary), "frontend", "--kubeconfig", admin_kcfg,
                              "--data-dir", str(root / "fe"), "--listen", "127.0.0.1:0"],
                             root / "frontend.log",
                             clean_env(AIRLOCK_NAMESPACE=NS,
                                       AIRLOCK_UPLOADER_PROXY_SECRET_FILE=str(root / "secret"),
                                       AIRLOCK_UPLOADER_URL_TEMPLATE=f"http://127.0.0.1:{self.uploader_port}"),
                             r"running at (http://\S+?)/\n")
        self.url = self.frontend.match.group(1)
        self.passwords = {"admin": (root / "fe" / "initial-admin-password").read_text().strip()}
        self.tokens: dict[str, str] = {}

    def cli(self, *args, user="admin", input=None):
        env = clean_env(AIRLOCK_CONFIG=str(self.root / f"cli-{user}.json"))
        p = subprocess.run([str(self.binary), *args], env=env, input=input, text=True, capture_output=True, timeout=60)
        assert p.returncode == 0, f"airlock {' '.join(args)}: {p.stdout}\n{p.stderr}"
        return p

    def login(self, user):
        self.cli("login", "--server", self.url, "--user", user, "--password-stdin", user=user,
                 input=self.passwords[user] + "\n")
        self.tokens[user] = json.loads((self.root / f"cli-{user}.json").read_text())["token"]

    def add_user(self, name, role, member=True):
        self.passwords[name] = f"{name}-password-123"
        self.cli("user", "add", name, "--password-stdin", "--role", role, input=self.passwords[name] + "\n")
        if member:
            self.cli("workspace", "add-member", WS, name)
        self.login(name)

    def api(self, method, path, user, **kw):
        return requests.request(method, self.url + path, headers={"Authorization": "Bearer " + self.tokens[user]},
                                timeout=30, **kw)

    def ds(self, name, user="res"):
        r = self.api("GET", f"/api/v1/datasources/{name}", user)
        assert r.status_code == 200, r.text
        return r.json()

    def deployment(self, name):
        status, body = self.kube.api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments/{name}")
        assert status == 200, body
        return json.loads(body)

    def browser(self, user):
        """A requests.Session logged in through the form, like a browser."""
        s = requests.Session()
        page = s.get(self.url + "/login", timeout=10)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = s.post(self.url + "/login", data={"username": user, "password": self.passwords[user], "csrf": csrf},
                   headers={"Origin": self.url}, allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.text
        return s


def uploaded_ds():
    return {
        "apiVersion": "xlscsde.nhs.uk/v1",
        "kind": "AnalyticsWorkspaceDataSource",
        "metadata": {"labels": {"xlscsde.nhs.uk/type": "uploaded"}},
        "spec": {"type": "Uploaded", "displayName": "Brought through the Kubernetes frontend",
                 "publisher": {"organisation": "Some Organisation",
                               "contact": {"name": "Joe Bloggs", "role": "Researcher"}},
                 "project": {"id": "d4e6"}},
    }


@pytest.fixture(scope="module")
def world(kube_bin, tmp_path_factory):
    binary = airlock_bin()
    kube = KubeEnv(kube_bin)
    kube.start()
    w = None
    try:
        kube.apply_crds(REPO / "deploy" / "crds")
        kube.kubectl("create", "namespace", NS)
        w = World(kube, binary, tmp_path_factory.mktemp("frontend-kube"))
        w.login("admin")
        w.cli("workspace", "create", WS)
        w.add_user("res", "researcher")
        w.add_user("outsider", "researcher", member=False)
        yield w
    finally:
        if w:
            codes = {"frontend": w.frontend.stop(), "operator": w.operator.stop()}
            assert codes == {"frontend": 0, "operator": 0}, codes
        kube.stop()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_frontend_scales_proxies_and_completes(world):
    w = world
    r = w.api("POST", f"/api/v1/datasources?workspace={WS}", "res", json=uploaded_ds())
    assert r.status_code == 201, r.text
    name = r.json()["metadata"]["name"]
    ds = wait_for("stage Uploading", lambda: (d := w.ds(name)) and d.get("status", {}).get("stage") == "Uploading" and d)
    dep_name = f"upload-{ds['metadata']['uid']}"
    assert w.deployment(dep_name)["spec"]["replicas"] == 0
    _in_namespace(w, name)
    kubelet = Kubelet(w.kube, w.binary, dep_name, w.root / "kubelet", w.uploader_port)
    (w.root / "kubelet").mkdir(exist_ok=True)
    (w.root / "kubelet" / "secret").write_text(SECRET + "\n")
    kubelet.start()
    try:
        _flow(w, name, dep_name, kubelet)
    finally:
        kubelet.quit.set()
        if kubelet.uploader:
            kubelet.uploader.stop()


def _in_namespace(w: World, name: str):
    """The API's objects are in NS, and nothing of the airlock's in "default"."""
    for res in ("analyticsworkspacedatasources", "analyticsworkspaces", "analyticsworkspacebindings",
                "analyticsworkspacedatabindings", "airlockauditrecords"):
        status, body = w.kube.api("GET", f"{CR_GROUP}/namespaces/default/{res}")
        assert status == 200 and json.loads(body)["items"] == [], (res, body)
    status, body = w.kube.api("GET", f"{CR_GROUP}/namespaces/{NS}/analyticsworkspacedatasources/{name}")
    assert status == 200, body
    status, body = w.kube.api("GET", f"{CR_GROUP}/namespaces/{NS}/analyticsworkspaces/{WS}")
    assert status == 200, body
    status, body = w.kube.api("GET", f"{CR_GROUP}/namespaces/{NS}/analyticsworkspacedatabindings")
    assert status == 200 and name in [b["spec"]["datasource"] for b in json.loads(body)["items"]], body
    status, body = w.kube.api("GET", f"{CR_GROUP}/namespaces/{NS}/analyticsworkspacebindings")
    assert status == 200 and "res" in {b["spec"]["username"] for b in json.loads(body)["items"]}, body
    status, body = w.kube.api("GET", f"{CR_GROUP}/namespaces/{NS}/airlockauditrecords")
    assert status == 200 and json.loads(body)["items"], "the audit records belong in the frontend's namespace"


def _flow(w: World, name: str, dep_name: str, kubelet: Kubelet):
    page_path = f"/workspaces/{WS}/datasources/{name}/upload"
    browser = w.browser("res")

    # 1. The upload page wakes the uploader: replicas 0 -> 1, "starting", a
    # meta refresh and no script, until the Deployment is ready.
    page = browser.get(w.url + page_path, timeout=30)
    assert page.status_code == 200, page.text
    # (The kubelet reports ready only after this page scaled it up.)
    assert "Starting the uploader" in page.text and 'http-equiv="refresh"' in page.text
    assert "<script" not in page.text
    # The wake is uploader_wake's merge patch: replicas 1 and scaled-up-at,
    # which starts the operator's idle clock (uploader_decide).
    woken = w.deployment(dep_name)
    assert woken["spec"]["replicas"] == 1
    assert re.fullmatch(RFC3339, woken["metadata"]["annotations"][SCALED_UP_AT])
    assert kubelet.started.wait(30), "the uploader was not started"
    page = wait_for("the upload page", lambda: (p := browser.get(w.url + page_path, timeout=30))
                    and "Starting the uploader" not in p.text and p)
    endpoint = f"/uploads/{dep_name}"
    assert f'data-endpoint="{endpoint}"' in page.text
    assert 'http-equiv="refresh"' not in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)

    # 2. A tus upload through the frontend with a bearer token; a client's
    # own X-Airlock-* headers are dropped.
    t = Tus(w.url, endpoint, {"Authorization": "Bearer " + w.tokens["res"],
                              "X-Airlock-User": "someone-else", "X-Airlock-Proxy-Secret": "guess"})
    data = os.urandom(3 * 1024 * 1024 + 17)
    loc = t.create_file("folder/measurements.csv", data)
    assert loc.startswith(endpoint + "/"), loc
    r = t.patch(loc, 0, data[:1_000_000])
    assert r.status_code == 204 and int(r.headers["Upload-Offset"]) == 1_000_000, r.text
    h = t.head(loc)
    assert h.status_code == 200 and int(h.headers["Upload-Offset"]) == 1_000_000
    assert h.headers["Tus-Resumable"] == "1.0.0"
    r = t.patch(loc, 1_000_000, data[1_000_000:])
    assert r.status_code == 204, r.text
    placed = kubelet.vol / "folder" / "measurements.csv"
    assert sha(placed.read_bytes()) == sha(data)
    info = [json.loads(p.read_text()) for p in (kubelet.vol / ".uploads").glob("*/info.json")]
    assert [i["owner"] for i in info] == ["res"], info  # not "someone-else"

    # The uploader's own answers pass through: a wrong offset is 409.
    small = t.create_file("small.csv", b"id,value\n1,2\n")
    r = t.patch(small, 5, b"x")
    assert r.status_code == 409, r.text
    assert t.delete(small).status_code == 204

    # 3. A big PATCH streams: the frontend's memory does not grow with it.
    big_len = 96 * 1024 * 1024
    big_path = w.root / "big.bin"
    digest = hashlib.sha256()
    with open(big_path, "wb") as f:
        block = os.urandom(1024 * 1024)
        for _ in range(big_len // len(block)):
            f.write(block)
            digest.update(block)
    before = peak_rss_kib(w.frontend.proc.pid)
    r = t.create(big_len, meta=metadata(filename="big.bin"))
    assert r.status_code == 201, r.text
    big = r.headers["Location"]
    with open(big_path, "rb") as f:
        r = t.patch(big, 0, f)
    assert r.status_code == 204 and int(r.headers["Upload-Offset"]) == big_len, r.text
    assert hashlib.sha256((kubelet.vol / "big.bin").read_bytes()).hexdigest() == digest.hexdigest()
    grew = peak_rss_kib(w.frontend.proc.pid) - before
    assert grew < 24 * 1024, f"the frontend's peak memory grew by {grew} KiB: it held the body"

    big_path.unlink()

    # 4. The session: a state change needs the CSRF header (and our origin).
    r = browser.post(w.url + endpoint, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "2",
                                                 "Upload-Metadata": metadata(filename="s.txt")}, timeout=10)
    assert r.status_code == 403, r.text
    r = browser.post(w.url + endpoint, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "2",
                                                 "Upload-Metadata": metadata(filename="s.txt"),
                                                 "X-CSRF-Token": csrf, "Origin": "https://evil.example"}, timeout=10)
    assert r.status_code == 403, r.text
    r = browser.post(w.url + endpoint, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "2",
                                                 "Upload-Metadata": metadata(filename="s.txt"),
                                                 "X-CSRF-Token": csrf, "Origin": w.url}, timeout=10)
    assert r.status_code == 201, r.text
    r = browser.patch(w.url + r.headers["Location"], data=b"ok",
                      headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "X-CSRF-Token": csrf,
                               "Content-Type": "application/offset+octet-stream"}, timeout=10)
    assert r.status_code == 204, r.text
    assert (kubelet.vol / "s.txt").read_bytes() == b"ok"

    # 5. Activity is recorded on the Deployment (RFC 3339, UTC), beside the
    # wake's scaled-up-at: the operator keeps it up by the later of the two.
    anns = w.deployment(dep_name)["metadata"]["annotations"]
    assert re.fullmatch(RFC3339, anns[ACTIVITY]), anns
    assert re.fullmatch(RFC3339, anns[SCALED_UP_AT]), anns
    assert anns[ACTIVITY] >= anns[SCALED_UP_AT], anns

    # 6. Nobody reaches the uploader around the frontend; no one else
    # reaches it through the frontend.
    direct = requests.post(f"http://127.0.0.1:{w.uploader_port}{endpoint}",
                           headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1", "X-Airlock-User": "res"},
                           timeout=10)
    assert direct.status_code == 401, direct.text
    r = requests.post(w.url + endpoint, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1"}, timeout=10)
    assert r.status_code == 401, r.text
    other = Tus(w.url, endpoint, {"Authorization": "Bearer " + w.tokens["outsider"]})
    assert other.create(1, meta=metadata(filename="x.txt")).status_code == 404
    assert other.head(loc).status_code == 404
    r = requests.get(w.url + "/uploads/upload-00000000-0000-0000-0000-000000000000",
                     headers={"Authorization": "Bearer " + w.tokens["res"], "Tus-Resumable": "1.0.0"}, timeout=10)
    assert r.status_code == 404, r.text

    # 7. A stopped uploader (scaled down while idle): 503 with a message a
    # person can act on, and the frontend wakes it again (uploader_wake).
    kubelet.uploader.stop()
    status, out = w.kube.api("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{dep_name}",
                             {"spec": {"replicas": 0}}, content_type="application/merge-patch+json")
    assert status == 200, out
    r = t.head(loc)
    assert r.status_code == 503, r.text
    assert r.headers.get("Retry-After") == "5"
    r = t.request("GET", endpoint)
    assert r.status_code == 503 and "try again" in r.json()["error"]["message"].lower(), r.text
    woken = w.deployment(dep_name)
    assert woken["spec"]["replicas"] == 1 and re.fullmatch(RFC3339, woken["metadata"]["annotations"][SCALED_UP_AT])
    # Still Uploading and just woken: the operator leaves it up.
    time.sleep(1)
    assert w.deployment(dep_name)["spec"]["replicas"] == 1
    w.kube.api("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{dep_name}/status",
               {"status": {"readyReplicas": 0, "availableReplicas": 0}}, content_type="application/merge-patch+json")
    kubelet.start_pod()
    assert t.head(loc).status_code == 200

    # 8. "All files uploaded": the uploader seals, the frontend fires
    # upload-complete as the person, and the datasource moves on.
    r = t.complete()
    assert r.status_code == 200, r.text
    body = r.json()
    files = {f["path"]: f for f in body["manifest"]["files"]}
    assert files["folder/measurements.csv"]["sha256"] == sha(data)
    assert body["datasource"]["status"]["stage"] == "Checking"
    assert w.ds(name)["status"]["stage"] == "Checking"
    assert w.ds(name)["status"]["dataState"] == "Completed"
    assert (kubelet.vol / ".uploads" / "completed.json").exists()
    # Said again: the uploader answers the same manifest, the gates refuse.
    assert t.complete().status_code == 409
    # Past Uploading, writes are refused by the frontend itself.
    assert t.create(1, meta=metadata(filename="late.txt")).status_code == 409

    # Sealed: the operator keeps the uploader at 0, so the frontend does not
    # wake it again; a request says the uploads are closed.
    wait_for("the sealed uploader scaled to 0", lambda: w.deployment(dep_name)["spec"]["replicas"] == 0)
    kubelet.uploader.stop()
    assert t.head(loc).status_code == 409
    r = t.request("GET", endpoint)
    assert r.status_code == 409 and "no longer takes uploads" in r.json()["error"]["message"], r.text
    assert w.deployment(dep_name)["spec"]["replicas"] == 0

    # The secret never reaches a log.
    for text in [w.frontend.text(), w.operator.text()] + [p.read_text() for p in kubelet.root.glob("uploader-*.log")]:
        assert SECRET not in text
