"""`airlock uploader`, the uploader of one datasource in Kubernetes, run as a
real process over a staging directory: its trust model (only the frontend,
proving itself with the shared secret, names the user), the tus protocol,
kill -9 and resume, expiry, "all files uploaded" - and the real tus-js-client
(the version scripts/web-deps.sh pins, from its cache) against it, since the browser widget uses that library."""
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import BIN, stop_server
from tus_client import Tus, metadata

SECRET = "a-shared-secret-from-a-kubernetes-secret"
BASE = "/uploads/upload-0123"
REPO = Path(__file__).resolve().parents[2]


class Uploader:
    def __init__(self, root: Path, *extra):
        self.root = root
        self.vol = root / "vol"
        self.vol.mkdir(parents=True, exist_ok=True)
        (root / "secret").write_text(SECRET + "\n")
        self.extra = list(extra)
        self.proc = None
        self.url = None
        self.log = root / "uploader.log"

    def start(self, timeout=15):
        listen = "127.0.0.1:0" if self.url is None else self.url.split("//")[1]
        args = [BIN, "uploader", "--dir", str(self.vol), "--listen", listen, "--base-path", BASE,
                "--proxy-secret-file", str(self.root / "secret"), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=open(self.log, "ab"), text=True,
                                     stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"airlock uploader exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            m = re.search(r"running at (http://[^/\s]+)", line)
            if m:
                self.url = m.group(1)
                return self
        raise RuntimeError("airlock uploader did not start in time")

    def stop(self, sig=signal.SIGTERM):
        proc, self.proc = self.proc, None
        stop_server(proc, self.log, "airlock uploader", sig)

    def tus(self, user="alice", secret=SECRET):
        h = {}
        if secret is not None:
            h["X-Airlock-Proxy-Secret"] = secret
        if user is not None:
            h["X-Airlock-User"] = user
        return Tus(self.url, BASE, h)


@pytest.fixture
def uploader(tmp_path):
    made = []

    def make(*extra):
        u = Uploader(tmp_path / f"u{len(made)}", *extra).start()
        made.append(u)
        return u

    yield make
    for u in made:
        u.stop()


def test_refuses_to_start_without_a_secret(tmp_path):
    (tmp_path / "vol").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_UPLOADER")}
    p = subprocess.run([BIN, "uploader", "--dir", str(tmp_path / "vol"), "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, env=env, timeout=10)
    assert p.returncode == 1 and "proxy secret" in p.stderr
    (tmp_path / "short").write_text("tooshort\n")
    p = subprocess.run([BIN, "uploader", "--dir", str(tmp_path / "vol"), "--listen", "127.0.0.1:0",
                        "--proxy-secret-file", str(tmp_path / "short")], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "shorter" in p.stderr
    assert "tooshort" not in p.stderr


def test_only_the_frontend_is_trusted(uploader):
    u = uploader()
    assert requests.get(u.url + "/healthz", timeout=5).status_code == 200
    assert requests.get(u.url + "/readyz", timeout=5).status_code == 200
    assert u.tus(secret=None).options().status_code == 204  # discovery needs no one
    for t in (u.tus(secret=None), u.tus(secret="wrong-" + SECRET), u.tus(secret=SECRET[:-1]), u.tus(user=None),
              u.tus(user="bad user")):
        r = t.create(3, meta=metadata(filename="a.csv"))
        assert r.status_code == 401, r.text
    assert SECRET not in u.log.read_text()
    assert requests.get(u.url + "/elsewhere", timeout=5).status_code == 404
    assert list(u.vol.iterdir()) == [u.vol / ".uploads"]


def test_upload_and_complete(uploader):
    u = uploader()
    alice, bob = u.tus("alice"), u.tus("bob")
    a = os.urandom(123_457)
    loc = alice.upload("dir/a.csv", a, pieces=4)
    assert loc.startswith(BASE + "/")
    assert bob.head(loc).status_code == 404, "another user's upload"
    half = alice.create_file("b.csv", b"0123456789")
    assert alice.patch(half, 0, b"01234").status_code == 204
    assert alice.complete().status_code == 409
    assert alice.patch(half, 5, b"56789").status_code == 204
    r = alice.complete()
    assert r.status_code == 200, r.text
    files = {f["path"]: f for f in r.json()["manifest"]["files"]}
    assert files["dir/a.csv"]["sha256"] == hashlib.sha256(a).hexdigest()
    assert files["b.csv"]["size"] == 10
    for p in files:
        assert stat.S_IMODE((u.vol / p).stat().st_mode) == 0o444
    # Sealed: writes are refused, completion answers the same again.
    assert alice.create(1, meta=metadata(filename="c.csv")).status_code == 403
    assert alice.patch(half, 10, b"x").status_code == 403
    assert alice.delete(loc).status_code == 403
    again = alice.complete()
    assert again.status_code == 200 and again.json()["manifest"] == r.json()["manifest"]
    # ... also after a restart.
    u.stop()
    u.start()
    assert alice.create(1, meta=metadata(filename="c.csv")).status_code == 403
    assert alice.request("GET", BASE).json()["complete"] is True


def test_kill9_and_resume(uploader):
    u = uploader()
    t = u.tus()
    data = os.urandom(150 << 20)
    loc = t.create_file("big.bin", data)
    sent = [0]

    def gen():
        for off in range(0, len(data), 1 << 20):
            if sent[0] >= 100 << 20:
                u.stop(signal.SIGKILL)
            yield data[off:off + (1 << 20)]
            sent[0] += 1 << 20

    with pytest.raises(requests.RequestException):
        t.patch(loc, 0, gen())
    u.start()
    off = int(t.head(loc).headers["Upload-Offset"])
    assert (64 << 20) <= off <= sent[0]
    assert t.patch(loc, off, data[off:]).status_code == 204
    info = json.loads((u.vol / ".uploads" / loc.rsplit("/", 1)[1] / "info.json").read_text())
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert (u.vol / "big.bin").read_bytes() == data


def test_expiry(uploader):
    u = uploader("--expire-seconds", "1", "--sweep-seconds", "1")
    t = u.tus()
    loc = t.create_file("abandoned.csv", b"x" * 10)
    d = u.vol / ".uploads" / loc.rsplit("/", 1)[1]
    deadline = time.time() + 10
    while d.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not d.exists()
    assert t.head(loc).status_code == 404
    assert t.complete().status_code == 200


def tus_js_client():
    """tus-js-client as the build installed it (scripts/web-deps.sh, the
    version it pins, from the cache): nothing is downloaded here."""
    if not shutil.which("node"):
        pytest.fail("node is needed to drive tus-js-client: run scripts/bootstrap.sh build")
    p = subprocess.run([str(REPO / "scripts" / "web-deps.sh"), "--package-dir"], capture_output=True, text=True,
                       timeout=30)
    if p.returncode != 0:
        pytest.fail(f"tus-js-client is not installed: {p.stderr.strip()}")
    pkg = Path(p.stdout.strip())
    assert (pkg / "package.json").exists(), pkg
    return pkg


def run_tus_js(u, pkg, endpoint, file, rel, mode, url=None, chunk=256 << 10):
    env = dict(os.environ, TUS_JS_CLIENT=str(pkg), TUS_CHUNK=str(chunk),
               TUS_HEADERS=json.dumps({"X-Airlock-Proxy-Secret": SECRET, "X-Airlock-User": "alice"}))
    script = Path(__file__).with_name("tus_js_upload.cjs")
    args = ["node", str(script), endpoint, str(file), rel, mode] + ([url] if url else [])
    p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_tus_js_client(uploader, tmp_path):
    pkg = tus_js_client()
    u = uploader()
    data = os.urandom((1 << 20) + 12345)
    src = tmp_path / "from-browser.csv"
    src.write_bytes(data)
    endpoint = u.url + BASE
    # Paused after the first chunk, then resumed from its URL (HEAD, then PATCH).
    first = run_tus_js(u, pkg, endpoint, src, "folder/from-browser.csv", "abort")
    assert first["offset"] == 256 << 10
    t = u.tus()
    assert int(t.head(first["url"]).headers["Upload-Offset"]) == 256 << 10
    done = run_tus_js(u, pkg, endpoint, src, "folder/from-browser.csv", "resume", first["url"])
    assert done["url"] == first["url"]
    assert (u.vol / "folder" / "from-browser.csv").read_bytes() == data
    # A whole file in one go, with the metadata the widget sends.
    run_tus_js(u, pkg, endpoint, src, "other/copy.csv", "full", chunk=4 << 20)
    assert (u.vol / "other" / "copy.csv").read_bytes() == data
    r = t.complete()
    assert r.status_code == 200
    assert {f["path"] for f in r.json()["manifest"]["files"]} == {"folder/from-browser.csv", "other/copy.csv"}
