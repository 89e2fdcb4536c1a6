"""The browser upload widget of the upload page (docs/frontend.md, "The upload
widget"), against a real `airlock serve`: the markup and its policy, the
static files (our upload.js, tus-js-client's bundle as pinned, its licences),
the tus routes with the page's session cookie and its CSRF header (and
without), other people's sessions, and the widget's pure helpers and the
real tus-js-client in Node. The widget in a real browser is
tests/e2e/test_upload_widget_browser.py's business."""
import hashlib
import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest
import requests

from test_frontend import WIDGET_CSP, CSP, Browser, Tags, create_via_form, csrf, site  # noqa: F401
from tus_client import Tus, metadata

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("AIRLOCK_CACHE", Path.home() / ".cache" / "airlock"))
PINNED = re.search(r"^TUS_JS_CLIENT_VERSION=(\S+)$", (ROOT / "scripts" / "web-deps.sh").read_text(), re.M).group(1)
TUS_PKG = CACHE / f"web-tus-js-client-{PINNED}" / "node_modules" / "tus-js-client"


def widget_attrs(html):
    """The attributes of the widget's root element, and all tags of the page,
    as a browser parses them."""
    tags = Tags()
    tags.feed(html)
    tags.close()
    m = re.search(r'<section[^>]*\bid="upload-widget"[^>]*>', html)
    assert m, html[:3000]
    one = Tags()
    one.feed(m.group(0))
    one.close()
    return {n: v for _, n, v in one.attrs}, tags


def uploading(site, user="res"):
    """A logged-in browser of `user`, a new Uploaded datasource at stage
    Uploading, and its upload page."""
    b = Browser(site)
    b.login(user)
    name, url = create_via_form(b)
    site.wait_stage(name, "Uploading")
    page = b.get(url)
    assert page.status_code == 200, page.text
    return b, name, page


def token_of(page):
    m = re.search(r'data-csrf="([^"]+)"', page.text)
    assert m, page.text[:3000]
    return unescape(m.group(1))


def cookie_tus(site, b, name, token=None, cookie=True):
    """A tus client carrying the browser's session cookie (and the CSRF header when given)."""
    h = {}
    if cookie:
        h["Cookie"] = "airlock_session=" + b.s.cookies["airlock_session"]
    if token is not None:
        h["X-CSRF-Token"] = token
    return Tus(site.url, f"/api/v1/datasources/{name}/uploads", headers=h)


def node():
    if not shutil.which("node"):
        pytest.fail("node is needed (Debian's nodejs; scripts/bootstrap.sh installs it)")
    return "node"


# ---------------------------------------------------------------------------


def test_upload_page_carries_the_widget(site):
    b, name, page = uploading(site)
    root, tags = widget_attrs(page.text)
    assert root.get("data-endpoint") == f"/api/v1/datasources/{name}/uploads"
    assert root.get("data-datasource") == name
    # The session's CSRF token: the one the page's forms carry too.
    assert root.get("data-csrf") == csrf(page.text, f"/workspaces/ws1/datasources/{name}/uploaded")
    assert page.headers["Content-Security-Policy"] == WIDGET_CSP
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
    # Only our own scripts, by path (same origin), none inline; no handler
    # attributes or styles (Browser._check asserts those for every page).
    assert tags.scripts == ["/static/tus.min.js", "/static/upload.js"]
    assert tags.script_text.strip() == ""
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    # Without JavaScript the page says what is missing.
    assert re.search(r"<noscript>.*needs\s+JavaScript.*</noscript>", page.text, re.S)
    # What the browser tests drive.
    attrs = {(t, n, v) for t, n, v in tags.attrs}
    for testid in ("upload-widget", "upload-drop", "upload-files", "upload-folder", "upload-status",
                   "upload-skipped", "upload-total", "upload-pause-all", "upload-resume-all", "upload-list",
                   "upload-existing", "upload-complete"):
        assert any(n == "data-testid" and v == testid for _, n, v in attrs), testid
    assert ("input", "multiple", None) in attrs
    assert ("input", "webkitdirectory", None) in attrs
    assert ("progress", "id", "upload-total") in attrs
    assert ("p", "aria-live", "polite") in attrs
    assert ("label", "for", "upload-files") in attrs and ("label", "for", "upload-folder") in attrs
    assert ("button", "id", "upload-complete") in attrs

    # Every other page keeps the strict policy, without scripts.
    for path in ("/", "/workspaces/ws1", f"/workspaces/ws1/datasources/{name}"):
        r = b.get(path)
        assert r.headers["Content-Security-Policy"] == CSP, path
        assert "upload-widget" not in r.text


def test_no_widget_for_someone_who_may_not_upload_here(site):
    # The page follows the uploader's rule (upload_access_of): a member of
    # ws1 with neither the researcher nor the data-engineer role may see the
    # datasource but not upload, so the page says who can, and has neither
    # the widget nor its policy.
    _, name, _ = uploading(site)
    if "wsappr" not in site.passwords:
        site.add_user("wsappr", "approver", workspaces=["ws1"])
    b2 = Browser(site)
    b2.login("wsappr")
    r = b2.get(f"/workspaces/ws1/datasources/{name}/upload")
    assert r.status_code == 200
    assert 'id="upload-widget"' not in r.text and "<script" not in r.text
    assert 'id="upload-not-yours"' in r.text and "researcher or data-engineer" in r.text
    assert 'id="upload-complete"' not in r.text
    assert r.headers["Content-Security-Policy"] == CSP
    assert "/upload\"" not in b2.get(f"/workspaces/ws1/datasources/{name}").text
    # The uploader agrees: 403 for a write.
    t = cookie_tus(site, b2, name, token=csrf(r.text, "/logout"))
    assert t.create(10, meta=metadata(filename="x.csv")).status_code == 403


def test_workspace_researcher_who_is_not_the_requester_gets_the_widget(site):
    # "both" is a member of ws1 with the researcher role but not the
    # requester: the uploader takes their uploads, so the page offers the
    # widget; "all files uploaded" stays the requester's.
    _, name, _ = uploading(site)
    b2 = Browser(site)
    b2.login("both")
    detail = b2.get(f"/workspaces/ws1/datasources/{name}")
    assert f'href="/workspaces/ws1/datasources/{name}/upload"' in detail.text
    r = b2.get(f"/workspaces/ws1/datasources/{name}/upload")
    assert r.status_code == 200
    root, tags = widget_attrs(r.text)
    assert root.get("data-endpoint") == f"/api/v1/datasources/{name}/uploads"
    assert r.headers["Content-Security-Policy"] == WIDGET_CSP
    assert tags.scripts == ["/static/tus.min.js", "/static/upload.js"]
    assert 'id="upload-complete"' not in r.text and 'id="upload-complete-by"' in r.text
    assert "res, who created this datasource" in r.text
    # And the uploader takes the upload the widget would send.
    data = b"id,v\n1,2\n"
    t = cookie_tus(site, b2, name, token_of(r))
    c = t.create(len(data), meta=metadata(filename="both.csv"))
    assert c.status_code == 201, c.text
    assert t.patch(c.headers["Location"], 0, data).status_code == 204


def test_admin_outside_the_workspace_may_complete_but_not_upload(site):
    _, name, _ = uploading(site)
    b2 = Browser(site)
    b2.login("admin", site.admin_password)
    r = b2.get(f"/workspaces/ws1/datasources/{name}/upload")
    assert r.status_code == 200
    assert 'id="upload-widget"' not in r.text and "<script" not in r.text
    assert 'id="upload-not-yours"' in r.text
    assert 'id="upload-complete"' in r.text  # as the uploader's may_complete says
    assert r.headers["Content-Security-Policy"] == CSP


def test_static_assets_are_served_with_their_types_and_caching(site):
    expected = {
        "/static/upload.js": "text/javascript; charset=utf-8",
        "/static/tus.min.js": "text/javascript; charset=utf-8",
        "/static/tus-licenses.txt": "text/plain; charset=utf-8",
        "/static/airlock.css": "text/css; charset=utf-8",
    }
    bodies = {}
    for path, ctype in expected.items():
        r = requests.get(site.url + path, timeout=10)  # no login needed
        assert r.status_code == 200, path
        assert r.headers["Content-Type"] == ctype, path
        assert r.headers["Cache-Control"] == "public, max-age=3600", path
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
        assert r.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'", path
        assert int(r.headers["Content-Length"]) == len(r.content) > 0, path
        bodies[path] = r.content
    # Our widget, byte for byte.
    assert bodies["/static/upload.js"] == (ROOT / "src" / "web" / "assets" / "upload.js").read_bytes()
    # tus-js-client: the version pinned in scripts/web-deps.sh, its licence
    # in front, then the package's own browser bundle unchanged.
    tus = bodies["/static/tus.min.js"]
    assert tus.startswith(f"/*! tus-js-client {PINNED} ".encode())
    head, _, rest = tus.partition(b" */\n")
    assert b"The MIT License (MIT)" in head and b"Copyright (c) 2015 tus" in head
    assert rest == (TUS_PKG / "dist" / "tus.min.js").read_bytes()
    assert len(rest) > 50_000
    assert json.loads((TUS_PKG / "package.json").read_text())["version"] == PINNED
    lic = bodies["/static/tus-licenses.txt"].decode()
    assert f"tus-js-client {PINNED} - licence: MIT" in lic
    assert "js-base64" in lic and "url-parse" in lic
    # Unknown static paths are pages (404), not files.
    assert requests.get(site.url + "/static/nothing.js", timeout=10, allow_redirects=False).status_code in (303, 404)


def test_tus_with_the_session_cookie_needs_the_csrf_header(site):
    b, name, page = uploading(site)
    token = token_of(page)
    data = os.urandom(300_000)
    good = cookie_tus(site, b, name, token)
    no_header = cookie_tus(site, b, name)
    wrong = cookie_tus(site, b, name, token[:-1] + ("A" if token[-1] != "A" else "B"))
    nobody = cookie_tus(site, b, name, token, cookie=False)
    meta = metadata(filename="a.csv", relativePath="folder/a.csv")

    # Refused before anything is made: 403 without or with a wrong token,
    # 401 without the cookie (the token alone is nobody).
    for t, status in ((no_header, 403), (wrong, 403), (nobody, 401)):
        r = t.create(len(data), meta=meta)
        assert r.status_code == status, r.text
        assert r.json()["error"]["status"] == status
        if status == 403:
            assert "X-CSRF-Token" in r.json()["error"]["message"]
            assert token not in r.text
    # Reading needs no token: the caller's (empty) list.
    r = no_header.request("GET", no_header.collection, tus=False)
    assert r.status_code == 200 and r.json()["uploads"] == []

    # With the header: creation, PATCH in two pieces, HEAD, the record.
    r = good.create(len(data), meta=meta)
    assert r.status_code == 201, r.text
    loc = r.headers["Location"]
    r = good.patch(loc, 0, data[:100_000])
    assert r.status_code == 204, r.text
    # A write without (or with a wrong) token changes nothing.
    for t in (no_header, wrong):
        r = t.patch(loc, 100_000, data[100_000:])
        assert r.status_code == 403, r.text
        r = t.request("POST", loc, headers={"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "100000",
                                            "Content-Type": "application/offset+octet-stream"},
                      data=data[100_000:])
        assert r.status_code == 403, r.text
        assert t.delete(loc).status_code == 403
    r = no_header.head(loc)  # HEAD reads: the cookie is enough
    assert r.status_code == 200 and r.headers["Upload-Offset"] == "100000"
    # Method override with the token works like the PATCH it stands for.
    r = good.request("POST", loc, headers={"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "100000",
                                           "Content-Type": "application/offset+octet-stream"},
                     data=data[100_000:])
    assert r.status_code == 204, r.text
    assert r.headers["Upload-Offset"] == str(len(data))
    rec = no_header.request("GET", loc, tus=False).json()
    assert rec["complete"] is True and rec["sha256"] == hashlib.sha256(data).hexdigest()
    listing = no_header.request("GET", no_header.collection, tus=False).json()
    assert [(u["path"], u["complete"]) for u in listing["uploads"]] == [("folder/a.csv", True)]

    # Bearer tokens work as before, without any CSRF header, and win over a
    # cookie sent alongside.
    bearer = Tus(site.url, good.collection, headers={"Authorization": "Bearer " + site.token("res")})
    assert bearer.head(loc).status_code == 200
    r = bearer.create(3, meta=metadata(filename="b.csv"))
    assert r.status_code == 201, r.text
    assert bearer.patch(r.headers["Location"], 0, b"abc").status_code == 204
    both = Tus(site.url, good.collection, headers={"Authorization": "Bearer " + site.token("res"),
                                                   "Cookie": no_header.headers["Cookie"]})
    r = both.create(1, meta=metadata(filename="c.csv"))
    assert r.status_code == 201, r.text
    assert both.delete(r.headers["Location"]).status_code == 204

    # "All files uploaded" through the uploader, as the person of the session.
    assert no_header.complete().status_code == 403
    r = good.complete()
    assert r.status_code == 200, r.text
    files = {f["path"]: f["sha256"] for f in r.json()["manifest"]["files"]}
    assert files == {"folder/a.csv": hashlib.sha256(data).hexdigest(), "b.csv": hashlib.sha256(b"abc").hexdigest()}
    site.wait_stage(name, "AwaitingApproval")

    # A session that has ended is refused (401), token or not.
    b.post("/logout", {"csrf": token})
    r = good.request("GET", good.collection, tus=False)
    assert r.status_code == 401, r.text


def test_other_sessions_cannot_see_or_touch_an_upload(site):
    b, name, page = uploading(site)
    mine = cookie_tus(site, b, name, token_of(page))
    loc = mine.create_file("secret.csv", b"12345")
    # "both": a researcher in the same workspace, with their own session and
    # token: the upload is not theirs (404), and their list is empty.
    b2 = Browser(site)
    b2.login("both")
    page2 = b2.get(f"/workspaces/ws1/datasources/{name}/upload")
    token2 = csrf(page2.text, "/logout")
    theirs = cookie_tus(site, b2, name, token2)
    assert theirs.head(loc).status_code == 404
    assert theirs.patch(loc, 0, b"12345").status_code == 404
    assert theirs.delete(loc).status_code == 404
    assert theirs.request("GET", loc, tus=False).status_code == 404
    r = theirs.request("GET", theirs.collection, tus=False)
    assert r.status_code == 200 and r.json()["uploads"] == []
    # My token with their cookie is no token (and the reverse).
    r = cookie_tus(site, b2, name, token_of(page)).create(1, meta=metadata(filename="x.csv"))
    assert r.status_code == 403, r.text
    # "other" is in another workspace: the datasource does not exist for them.
    b3 = Browser(site)
    b3.login("other")
    page3 = b3.get("/")
    r = cookie_tus(site, b3, name, csrf(page3.text, "/logout")).request("GET", mine.collection, tus=False)
    assert r.status_code == 404, r.text
    # Still mine, untouched.
    r = mine.head(loc)
    assert r.status_code == 200 and r.headers["Upload-Offset"] == "0"


def test_real_tus_js_client_with_the_session(site, tmp_path):
    """tus-js-client (the bundle's package, from the build's cache) in Node,
    with the cookie and header the widget sends: the upload goes through;
    without the header it is refused."""
    b, name, page = uploading(site)
    f = tmp_path / "data.csv"
    data = os.urandom(2_500_000)
    f.write_bytes(data)
    endpoint = site.url + f"/api/v1/datasources/{name}/uploads"
    cookie = "airlock_session=" + b.s.cookies["airlock_session"]

    def run(headers):
        env = dict(os.environ, TUS_JS_CLIENT=str(TUS_PKG), TUS_HEADERS=json.dumps(headers), TUS_CHUNK="1000000")
        return subprocess.run([node(), str(ROOT / "tests" / "e2e" / "tus_js_upload.cjs"), endpoint, str(f),
                               "dir/data.csv", "full"], capture_output=True, text=True, timeout=120, env=env)

    p = run({"Cookie": cookie})
    assert p.returncode != 0 and "403" in p.stderr, (p.stdout, p.stderr)
    p = run({"Cookie": cookie, "X-CSRF-Token": token_of(page)})
    assert p.returncode == 0, p.stderr
    url = json.loads(p.stdout.strip().splitlines()[-1])["url"]
    rec = cookie_tus(site, b, name).request("GET", url, tus=False).json()
    assert rec["path"] == "dir/data.csv" and rec["sha256"] == hashlib.sha256(data).hexdigest()


def test_widget_helpers_in_node(site, tmp_path):
    """The pure functions of the served upload.js: hidden files, relativePath,
    metadata, messages from the uploader's errors, what is retried."""
    js = tmp_path / "upload.js"
    js.write_bytes(requests.get(site.url + "/static/upload.js", timeout=10).content)
    script = r"""
const h = require(process.argv[1]);
const out = {
  paths: [h.filePath('a.csv', '', ''), h.filePath('a.csv', 'folder/sub/a.csv', ''),
          h.filePath('a.csv', '', '/folder/a.csv'), h.filePath('x', 'ignored/x', '//d/x')],
  hidden: ['.DS_Store', 'f/.DS_Store', '.git/config', 'f/.hidden/a.csv', 'f/a.csv', 'a.b', 'f/..x/a']
    .map((p) => h.isHiddenPath(p)),
  split: h.partitionHidden([{path: 'd/a.csv'}, {path: 'd/.DS_Store'}, {path: 'd/.git/x'}, {path: 'b'}]),
  notes: [h.addedNote(1, []), h.addedNote(2, ['d/.DS_Store']),
          h.addedNote(0, ['.a', 'b/.c', 'd/.e/f', '.g'])],
  meta: [h.tusMetadata('d/e/a.csv', 'text/csv'), h.tusMetadata('a.csv', '')],
  errors: [h.errorText(413, JSON.stringify({error: {message: 'the file is over the limit of 10 bytes'}})),
           h.errorText(409, JSON.stringify({error: {message: "the name 'a.csv' is taken"}})),
           h.errorText(460, ''), h.errorText(0, ''), h.errorText(401, 'not json')],
  retry: [h.shouldRetry(0, 'PATCH'), h.shouldRetry(423, 'PATCH'), h.shouldRetry(409, 'PATCH'),
          h.shouldRetry(409, 'POST'), h.shouldRetry(413, 'POST'), h.shouldRetry(460, 'PATCH'),
          h.shouldRetry(503, 'PATCH'), h.shouldRetry(507, 'PATCH'), h.shouldRetry(403, 'POST')],
  bytes: [h.formatBytes(0), h.formatBytes(999), h.formatBytes(1500), h.formatBytes(2.5e9)],
};
console.log(JSON.stringify(out));
"""
    p = subprocess.run([node(), "-e", script, str(js)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    assert o["paths"] == ["a.csv", "folder/sub/a.csv", "folder/a.csv", "d/x"]
    assert o["hidden"] == [True, True, True, True, False, False, True]
    assert [i["path"] for i in o["split"]["keep"]] == ["d/a.csv", "b"]
    assert [i["path"] for i in o["split"]["hidden"]] == ["d/.DS_Store", "d/.git/x"]
    # The hidden files are named (the widget once printed "[object Object]").
    assert o["notes"] == ["1 file added.",
                          "2 files added. Left out 1 hidden file (names starting with a dot: d/.DS_Store).",
                          "0 files added. Left out 4 hidden files (names starting with a dot: .a, b/.c, d/.e/f, ...)."]
    assert o["meta"] == [{"filename": "a.csv", "relativePath": "d/e/a.csv", "filetype": "text/csv"},
                         {"filename": "a.csv"}]
    assert o["errors"] == ["Too big: the file is over the limit of 10 bytes",
                           "Not possible: the name 'a.csv' is taken", "Checksum mismatch",
                           "The connection failed", "Your session has ended: log in again"]
    assert o["retry"] == [True, True, True, False, False, False, True, False, False]
    assert o["bytes"] == ["0 bytes", "999 bytes", "1.5 KB", "2.5 GB"]
