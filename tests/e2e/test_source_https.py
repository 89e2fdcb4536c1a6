"""End-to-end: `airlock run-job` with an `https` connection (files over TLS).

A small threaded HTTPS file server runs in the test process with a
self-signed certificate made by `openssl req` in the test's temp dir; the
runner trusts it through AIRLOCK_CA_FILE. The server sends ETag,
Last-Modified, Accept-Ranges, Content-Length and Repr-Digest, honours
Range / If-Range, logs every request, and can be told to cut a response
after N bytes, to change a file, to require credentials, to refuse HEAD or
to lie about the digest.
"""
import base64
import email.utils
import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

AIRLOCK_BIN = os.environ.get("AIRLOCK_BIN", "bin/airlock")
PASSWORD = "s3cret-FILES-password-771"
QUERY_SECRET = "sig-QUERYTOKEN-4455"


def make_cert(d: Path):
    if not shutil.which("openssl"):
        raise AssertionError("openssl is needed to make the test server's certificate (apt-get install openssl)")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class FileServer:
    """Serves self.files under /data/ over TLS."""

    def __init__(self, tmp: Path):
        self.cert, self.key = make_cert(tmp)
        self.files: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}
        self.cut_after = None       # cut the next GET body after this many bytes (one-shot)
        self.basic = None           # (user, password) required
        self.bearer = None          # token required
        self.head_allowed = True
        self.bad_digest = False
        self.digest_header = "Repr-Digest"
        self.need_query = None      # query string every request must carry
        self.public = set()         # names served without credentials
        self.redirects = {}         # name -> absolute url to redirect to
        self.requests = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_HEAD(self):
                self.serve(head=True)

            def do_GET(self):
                self.serve(head=False)

            def reply(self, code, headers=(), body=b""):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def serve(self, head):
                u = urllib.parse.urlsplit(self.path)
                with server.lock:
                    server.requests.append({"method": self.command, "path": u.path, "query": u.query,
                                            "headers": {k.lower(): v for k, v in self.headers.items()}})
                if head and not server.head_allowed:
                    return self.reply(405, [("Allow", "GET")])
                if server.need_query is not None and u.query != server.need_query:
                    return self.reply(403, body=b"bad signature")
                name = urllib.parse.unquote(u.path[len("/data/"):]) if u.path.startswith("/data/") else None
                if name in server.redirects:
                    return self.reply(302, [("Location", server.redirects[name])])
                auth = self.headers.get("Authorization", "") if name not in server.public else None
                if server.basic and auth is not None:
                    want = "Basic " + base64.b64encode(":".join(server.basic).encode()).decode()
                    if auth != want:
                        return self.reply(401, [("WWW-Authenticate", 'Basic realm="files"')], b"no")
                if server.bearer and auth is not None and auth != "Bearer " + server.bearer:
                    return self.reply(401, [("WWW-Authenticate", "Bearer")], b"no")
                data = server.files.get(name)
                if data is None:
                    return self.reply(404, body=b"not here")
                etag = '"v%d-%s"' % (server.versions[name], hashlib.md5(data).hexdigest()[:8])
                digest = hashlib.sha256(b"x" + data if server.bad_digest else data).digest()
                b64 = base64.b64encode(digest).decode()
                headers = [("ETag", etag), ("Accept-Ranges", "bytes"),
                           ("Last-Modified", email.utils.formatdate(1700000000 + server.versions[name], usegmt=True)),
                           (server.digest_header,
                            f"sha-256=:{b64}:" if server.digest_header != "Digest" else f"SHA-256={b64}")]
                start = 0
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and rng.startswith("bytes=") and (if_range is None or if_range == etag):
                    first, _, last = rng[6:].partition("-")
                    start = int(first)
                    if start >= len(data):
                        return self.reply(416, [("Content-Range", f"bytes */{len(data)}")])
                    end = int(last) if last else len(data) - 1
                    body = data[start:end + 1]
                    headers.append(("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}"))
                    code = 206
                else:
                    body, code = data, 200
                cut = server.cut_after if not head else None
                if cut is None:
                    return self.reply(code, headers, body)
                server.cut_after = None
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def put(self, name, data):
        self.files[name] = data
        self.versions[name] = self.versions.get(name, 0) + 1

    def gets(self, name, method="GET"):
        path = "/data/" + urllib.parse.quote(name)
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(tmp_path):
    s = FileServer(tmp_path)
    yield s
    s.stop()


def job(tmp, url, names, creds=None, user_key="FilesUser", password_key="FilesPassword"):
    conn = {"type": "https", "name": "files", "url": url}
    if user_key or password_key:
        conn["credentials"] = {k: v for k, v in (("userKey", user_key), ("passwordKey", password_key)) if v}
    ds = {
        "apiVersion": "xlscsde.nhs.uk/v1",
        "kind": "AnalyticsWorkspaceDataSource",
        "metadata": {"name": "files-1"},
        "spec": {
            "type": "Import",
            "publisher": {"organisation": "Test Org", "contact": {"name": "T", "role": "Engineer"}},
            "project": {"id": "p1"},
            "displayName": "Files over HTTPS",
            "description": "Some files.",
            "license": "Test only.",
            "connections": [conn],
            "objects": [{"table": {"name": n, "connection": "files"}} for n in names],
        },
    }
    dsf = tmp / "ds.json"
    dsf.write_text(json.dumps(ds))
    cf = tmp / "creds.json"
    cf.write_text(json.dumps(creds or {}))
    cf.chmod(0o600)
    return dsf, cf


def run_job(server, dsf, cf, out, ca=True, extra_env=None):
    env = dict(os.environ)
    env.pop("AIRLOCK_ALLOW_HTTP", None)
    env.pop("AIRLOCK_CA_FILE", None)
    if ca:
        env["AIRLOCK_CA_FILE"] = str(server.cert)
    env.update(extra_env or {})
    return subprocess.run([AIRLOCK_BIN, "run-job", "--datasource", dsf, "--output", out, "--credentials", cf],
                          capture_output=True, text=True, env=env, timeout=120)


def assert_no_secret(*texts):
    for t in texts:
        assert PASSWORD not in t
        assert QUERY_SECRET not in t


def test_download_checksums_and_crate(server, tmp_path):
    a = os.urandom(700_000)
    b = "naïve,data\r\n1,2\r\n".encode()
    server.put("big.bin", a)
    server.put("data file.csv", b)
    server.basic = ("alice", PASSWORD)
    server.need_query = "sig=" + QUERY_SECRET
    server.head_allowed = False  # check() falls back to a one-byte GET
    url = f"https://127.0.0.1:{server.port}/data/?sig={QUERY_SECRET}"
    dsf, cf = job(tmp_path, url, ["big.bin", "data file.csv"], {"FilesUser": "alice", "FilesPassword": PASSWORD})
    out = tmp_path / "out"
    r = run_job(server, dsf, cf, out)
    assert r.returncode == 0, r.stderr
    assert (out / "big.bin").read_bytes() == a
    assert (out / "data file.csv").read_bytes() == b
    assert sorted(p.name for p in out.iterdir()) == ["big.bin", "data file.csv", "ro-crate-metadata.json"]
    # The probe for a server that refuses HEAD asked for one byte.
    probes = [g for g in server.gets("big.bin") if g["headers"].get("range") == "bytes=0-0"]
    assert len(probes) == 1
    meta_text = (out / "ro-crate-metadata.json").read_text()
    assert_no_secret(r.stderr, r.stdout, meta_text)
    assert "sig=" not in meta_text and "sig=" not in r.stderr
    from rocrate.rocrate import ROCrate
    crate = ROCrate(str(out))
    ents = {e.id: e for e in crate.data_entities}
    assert set(ents) == {"big.bin", "data%20file.csv"}
    assert ents["big.bin"]["sha256"] == hashlib.sha256(a).hexdigest()
    assert ents["data%20file.csv"]["sha256"] == hashlib.sha256(b).hexdigest()
    assert str(ents["big.bin"]["contentSize"]) == str(len(a))
    meta = json.loads(meta_text)
    assert "127.0.0.1" in meta_text
    action = [e for e in meta["@graph"] if e.get("@type") == "CreateAction"][0]
    assert action["actionStatus"] == "http://schema.org/CompletedActionStatus" or \
        action["actionStatus"].endswith("CompletedActionStatus")


def test_bearer_token_and_digest_header(server, tmp_path):
    data = b"x" * 5000
    server.put("f.txt", data)
    server.bearer = PASSWORD
    server.digest_header = "Digest"  # RFC 3230 form
    dsf, cf = job(tmp_path, f"https://127.0.0.1:{server.port}/data", ["f.txt"], {"FilesPassword": PASSWORD},
                  user_key=None)
    out = tmp_path / "out"
    r = run_job(server, dsf, cf, out)
    assert r.returncode == 0, r.stderr
    assert (out / "f.txt").read_bytes() == data
    assert_no_secret(r.stderr)


def test_resume_after_cut(server, tmp_path):
    data = os.urandom(1_000_000)
    server.put("big.bin", data)
    server.cut_after = 300_000
    dsf, cf = job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["big.bin"])
    out = tmp_path / "out"
    r = run_job(server, dsf, cf, out)
    assert r.returncode == 1
    assert "broke off" in r.stderr and "run the job again" in r.stderr, r.stderr
    part = out / "big.bin.part"
    assert part.exists() and not (out / "big.bin").exists()
    kept = part.stat().st_size
    assert 0 < kept < len(data)
    assert (out / "big.bin.part.meta").exists()
    assert part.read_bytes() == data[:kept]

    r = run_job(server, dsf, cf, out)
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stderr
    assert (out / "big.bin").read_bytes() == data
    assert not part.exists() and not (out / "big.bin.part.meta").exists()
    last = server.gets("big.bin")[-1]
    assert last["headers"].get("range") == f"bytes={kept}-"
    assert last["headers"].get("if-range", "").startswith('"v1-')
    meta = json.loads((out / "ro-crate-metadata.json").read_text())
    files = {e["@id"]: e for e in meta["@graph"] if e.get("@type") == "File"}
    assert files["big.bin"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_restart_when_file_changed(server, tmp_path):
    old, new = os.urandom(400_000), os.urandom(450_000)
    server.put("f.bin", old)
    server.cut_after = 100_000
    dsf, cf = job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["f.bin"])
    out = tmp_path / "out"
    assert run_job(server, dsf, cf, out).returncode == 1
    assert (out / "f.bin.part").exists()
    server.put("f.bin", new)  # new ETag
    r = run_job(server, dsf, cf, out)
    assert r.returncode == 0, r.stderr
    assert "resumed" not in r.stderr
    assert (out / "f.bin").read_bytes() == new
    last = server.gets("f.bin")[-1]
    assert last["headers"].get("range", "").startswith("bytes=")  # it asked to continue ...
    assert last["headers"].get("if-range", "").startswith('"v1-')  # ... with the old validator: got a 200


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    server.put("f.bin", os.urandom(50_000))
    server.bad_digest = True
    dsf, cf = job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["f.bin"])
    out = tmp_path / "out"
    r = run_job(server, dsf, cf, out)
    assert r.returncode == 1
    assert "checksum mismatch" in r.stderr and "Repr-Digest" in r.stderr, r.stderr
    assert not (out / "f.bin").exists() and not (out / "f.bin.part").exists()
    assert not (out / "f.bin.part.meta").exists()
    meta = json.loads((out / "ro-crate-metadata.json").read_text())
    action = [e for e in meta["@graph"] if e.get("@type") == "CreateAction"][0]
    assert action["actionStatus"].endswith("FailedActionStatus")


def test_wrong_credentials(server, tmp_path):
    server.put("f.bin", b"data")
    server.basic = ("alice", "the-right-one")
    dsf, cf = job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["f.bin"],
                  {"FilesUser": "alice", "FilesPassword": PASSWORD})
    out = tmp_path / "out"
    r = run_job(server, dsf, cf, out)
    assert r.returncode == 1
    assert "HTTP 401" in r.stderr and "FilesUser" in r.stderr and "FilesPassword" in r.stderr, r.stderr
    assert_no_secret(r.stderr, r.stdout)
    assert not out.exists()  # checked before anything was written


def test_missing_file(server, tmp_path):
    server.put("f.bin", b"data")
    dsf, cf = job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["f.bin", "nope.bin"])
    out = tmp_path / "out"
    r = run_job(server, dsf, cf, out)
    assert r.returncode == 1
    assert "'nope.bin' not found" in r.stderr and "HTTP 404" in r.stderr, r.stderr
    assert not out.exists()


def test_unreachable_host(server, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    dsf, cf = job(tmp_path, f"https://127.0.0.1:{port}/data/", ["f.bin"])
    t0 = time.time()
    r = run_job(server, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "cannot reach the server" in r.stderr, r.stderr
    assert time.time() - t0 < 60


def test_tls_is_verified_and_http_refused(server, tmp_path):
    server.put("f.bin", b"data")
    dsf, cf = job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["f.bin"])
    r = run_job(server, dsf, cf, tmp_path / "out", ca=False)
    assert r.returncode == 1
    assert "TLS failed" in r.stderr and "AIRLOCK_CA_FILE" in r.stderr, r.stderr
    dsf, cf = job(tmp_path, f"http://127.0.0.1:{server.port}/data/", ["f.bin"])
    r = run_job(server, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "use https://" in r.stderr, r.stderr


def test_redirect_to_another_host_drops_credentials(server, tmp_path):
    data = os.urandom(20_000)
    server.put("pub.bin", data)
    server.public.add("pub.bin")
    server.basic = ("alice", PASSWORD)
    # 127.0.0.1 -> localhost: the same server, but another host name.
    server.redirects["moved.bin"] = f"https://localhost:{server.port}/data/pub.bin"
    dsf, cf = job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["moved.bin"],
                  {"FilesUser": "alice", "FilesPassword": PASSWORD})
    out = tmp_path / "out"
    r = run_job(server, dsf, cf, out)
    assert r.returncode == 0, r.stderr
    assert (out / "moved.bin").read_bytes() == data
    first = server.gets("moved.bin") + server.gets("moved.bin", "HEAD")
    assert first and all(q["headers"].get("authorization", "").startswith("Basic ") for q in first)
    followed = server.gets("pub.bin") + server.gets("pub.bin", "HEAD")
    assert followed and all("authorization" not in q["headers"] for q in followed)
