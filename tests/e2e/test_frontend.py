"""The web frontend of `airlock serve`, driven like a browser without
JavaScript (requests.Session): log in through the form, see your workspace,
create an Uploaded datasource, confirm the upload, and approve or reject it
from the approver queue. Security: CSRF tokens and same-origin checks on
every state change, escaping, 404 for other workspaces, a strict CSP."""
import hashlib
import re
from html import unescape
from html.parser import HTMLParser

import pytest
import requests

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEX32 = re.compile(r"^ds-([0-9a-f]{32})$")
# The upload page with its widget (and only it) may load the airlock's own
# scripts and connect to the airlock (tests/e2e/test_upload_widget.py).
WIDGET_CSP = CSP + "; script-src 'self'; connect-src 'self'"
WIDGET_SCRIPTS = ["/static/tus.min.js", "/static/upload.js"]


class Tags(HTMLParser):
    """Every tag and attribute of a page, as a browser would parse them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.names = set()
        self.attrs = []
        self.scripts = []       # the src of every <script>
        self.script_text = ""   # what is between <script> and </script>
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.names.add(tag)
        self.attrs += [(tag, n, v) for n, v in attrs]
        if tag == "script":
            self.scripts.append(dict(attrs).get("src"))
            self._in_script = True

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_text += data


class Browser:
    """A browser session that checks every page it sees."""

    def __init__(self, airlock):
        self.a = airlock
        self.s = requests.Session()
        self.pages = []

    def _check(self, r):
        # Every answer of the frontend carries the policy (redirects too);
        # the upload page with the widget adds its scripts' sources.
        widget = 'id="upload-widget"' in r.text
        assert r.headers.get("Content-Security-Policy") == (WIDGET_CSP if widget else CSP), (r.url, r.headers)
        if r.headers.get("Content-Type", "").startswith("text/html"):
            body = r.text
            assert body.startswith("<!DOCTYPE html>")
            assert '<meta name="viewport"' in body
            # No JavaScript but the widget's files, and nothing the CSP would
            # have to block: what a browser's parser sees as tags and attributes.
            tags = Tags()
            tags.feed(body)
            tags.close()
            if widget:
                assert r.url.endswith("/upload"), r.url
                assert tags.scripts == WIDGET_SCRIPTS and tags.script_text.strip() == "", r.url
            else:
                assert "script" not in tags.names, r.url
            for tag, name, value in tags.attrs:
                assert not name.startswith("on"), (r.url, tag, name)
                assert name != "style", (r.url, tag)
                assert not (value or "").strip().lower().startswith("javascript:"), (r.url, tag, name)
            self.pages.append(r.url)
        return r

    def get(self, path, **kw):
        r = self.s.get(self.a.url + path, allow_redirects=False, timeout=30, **kw)
        return self._check(r)

    def post(self, path, data, **kw):
        r = self.s.post(self.a.url + path, data=data, allow_redirects=False, timeout=30, **kw)
        return self._check(r)

    def follow(self, r):
        while r.status_code in (302, 303):
            r = self.get(r.headers["Location"])
        return r

    def login(self, user, password=None):
        password = password or (self.a.admin_password if user == "admin" else self.a.passwords[user])
        page = self.get("/login")
        assert page.status_code == 200
        r = self.post("/login", {"csrf": csrf(page.text), "username": user, "password": password})
        assert r.status_code == 303, r.text
        assert r.headers["Location"] == "/"
        return r


def csrf(html, action=None):
    """The CSRF token of the form posting to `action` (or of the first form)."""
    forms = re.findall(r'<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>', html, re.S)
    for act, inner in forms:
        if action is None or unescape(act) == action:
            m = re.search(r'name="csrf" value="([^"]+)"', inner)
            if m:
                return m.group(1)
    raise AssertionError(f"no form with a CSRF token for {action}: {html[:2000]}")


def form_fields(html, action):
    """name -> value of the hidden inputs of the form posting to action."""
    for act, inner in re.findall(r'<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>', html, re.S):
        if unescape(act) == action:
            return {n: unescape(v) for n, v in
                    re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', inner)}
    raise AssertionError(f"no form for {action}")


@pytest.fixture
def site(airlock):
    """Two workspaces; a researcher in each; approvers; someone who is both."""
    a = airlock
    a.login("admin")
    a.cli("workspace", "create", "ws1", "--display-name", "Workspace One")
    a.cli("workspace", "create", "ws2", "--display-name", "Workspace Two")
    a.add_user("res", "researcher", workspaces=["ws1"])
    a.add_user("other", "researcher", workspaces=["ws2"])
    a.add_user("appr", "approver")
    a.add_user("both", "researcher", "approver", workspaces=["ws1"])
    return a


def create_via_form(b, ws="ws1", **fields):
    page = b.get(f"/workspaces/{ws}/new")
    assert page.status_code == 200, page.text
    data = {"csrf": csrf(page.text, f"/workspaces/{ws}/datasources"),
            "displayName": "An uploaded example dataset",
            "description": "An example dataset which the user has brought\r\nfor themselves.",
            "license": "This sample data may ONLY be used for demos",
            "organisation": "Some Organisation", "contactName": "Joe Bloggs",
            "contactRole": "Research Engineer", "project": "d4e6"}
    data.update(fields)
    r = b.post(f"/workspaces/{ws}/datasources", data)
    assert r.status_code == 303, r.text
    m = re.fullmatch(rf"/workspaces/{ws}/datasources/(ds-[0-9a-f]{{32}})/upload", r.headers["Location"])
    assert m, r.headers["Location"]
    return m.group(1), r.headers["Location"]


def staging_dir(a, ds):
    return a.data / "staging" / f"ds-{ds['metadata']['uid']}"


def upload_and_confirm(a, b, name, files):
    """Plays the upload (files straight into the staging area, as the widget
    will) and presses "All files uploaded"."""
    ds = a.wait_stage(name, "Uploading")
    d = staging_dir(a, ds)
    assert d.is_dir(), f"no staging area {d}"
    for rel, content in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(content)
    page_path = f"/workspaces/ws1/datasources/{name}/upload"
    page = b.get(page_path)
    assert page.status_code == 200
    assert "All files uploaded" in page.text
    action = f"/workspaces/ws1/datasources/{name}/uploaded"
    r = b.post(action, {"csrf": csrf(page.text, action)})
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == f"/workspaces/ws1/datasources/{name}"
    return a.wait_stage(name, "AwaitingApproval")


# ---------------------------------------------------------------------------


def test_login_form_session_cookie_and_logout(site):
    b = Browser(site)
    # Not logged in: every page sends you to the login form.
    r = b.get("/")
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    assert b.get("/workspaces/ws1").headers["Location"] == "/login"

    page = b.get("/login")
    token = csrf(page.text)
    bad = b.post("/login", {"csrf": token, "username": "res", "password": "wrong-password-123"})
    assert bad.status_code == 401
    assert "Invalid username or password" in bad.text
    assert 'value="res"' in bad.text  # the username is kept, the password not
    assert "wrong-password" not in bad.text

    r = b.login("res")
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("airlock_session=")
    for flag in ("HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie, cookie
    assert "Secure" not in cookie  # plain http on loopback

    home = b.follow(r)
    assert home.status_code == 200
    assert 'href="/workspaces/ws1"' in home.text and "Workspace One" in home.text
    assert "ws2" not in home.text, "another workspace is not listed"
    assert 'href="/approvals"' not in home.text, "a researcher has no approval queue"
    assert b.get("/approvals").status_code == 403

    # The login was audited as such.
    assert any(x["action"] == "login" and x["actor"]["name"] == "res" for x in site.audit())

    # Logging out needs the token too; then the session is gone for good.
    assert b.post("/logout", {}).status_code == 403
    assert b.get("/").status_code == 200
    old = dict(b.s.cookies)
    r = b.post("/logout", {"csrf": csrf(home.text, "/logout")})
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    assert "Max-Age=0" in r.headers["Set-Cookie"]
    replay = requests.get(site.url + "/", cookies=old, allow_redirects=False, timeout=10)
    assert replay.status_code == 303 and replay.headers["Location"] == "/login"


def test_login_form_needs_its_token(site):
    b = Browser(site)
    b.get("/login")
    r = b.post("/login", {"username": "res", "password": site.passwords["res"]})
    assert r.status_code == 403
    assert "airlock_session" not in r.headers.get("Set-Cookie", "")
    # A login form from another site is refused even with a token.
    page = b.get("/login")
    r = b.post("/login", {"csrf": csrf(page.text), "username": "res", "password": site.passwords["res"]},
               headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def test_sessions_survive_a_restart(site):
    b = Browser(site)
    b.login("res")
    site.stop()
    site.start()
    r = b.get("/")
    assert r.status_code == 200 and "Workspace One" in r.text


def test_password_change_ends_web_sessions(site):
    b = Browser(site)
    b.login("res")
    assert b.get("/").status_code == 200
    r = site.api("PUT", "/api/v1/users/res", json={"password": "another-password-456"})
    assert r.status_code == 200, r.text
    assert b.get("/").headers["Location"] == "/login"


def test_create_uploaded_datasource_through_the_form(site):
    b = Browser(site)
    b.login("res")
    ws = b.get("/workspaces/ws1")
    assert ws.status_code == 200 and 'href="/workspaces/ws1/new"' in ws.text

    name, upload_url = create_via_form(b)
    hexpart = HEX32.match(name).group(1)
    # The API shows what the form made: the seed's datasource and binding.
    ds = site.ds(name, user="res")
    assert ds["spec"]["type"] == "Uploaded"
    assert ds["spec"]["displayName"] == "An uploaded example dataset"
    assert ds["spec"]["description"] == "An example dataset which the user has brought\nfor themselves."
    assert ds["spec"]["publisher"] == {"organisation": "Some Organisation",
                                       "contact": {"name": "Joe Bloggs", "role": "Research Engineer"}}
    assert ds["spec"]["project"] == {"id": "d4e6"}
    assert ds["metadata"]["labels"]["xlscsde.nhs.uk/type"] == "uploaded"
    assert ds["metadata"]["labels"]["xlscsde.nhs.uk/workspace"] == "ws1"
    assert ds["status"]["requestedBy"] == "res"
    r = site.api("GET", f"/api/v1/databindings/dsb-{hexpart}", user="res")
    assert r.status_code == 200, r.text
    assert r.json()["spec"] == {"workspace": "ws1", "datasource": name}

    # The upload page: the datasource's details and, once the upload area
    # is open, the "All files uploaded" button.
    site.wait_stage(name, "Uploading")
    page = b.get(upload_url)
    assert page.status_code == 200
    assert "An uploaded example dataset" in page.text and "Some Organisation" in page.text
    assert "All files uploaded" in page.text
    assert f'action="/workspaces/ws1/datasources/{name}/uploaded"' in page.text

    # The workspace lists it with its stage; the detail page shows it.
    ws = b.get("/workspaces/ws1")
    assert name in ws.text and "Uploading" in ws.text
    detail = b.get(f"/workspaces/ws1/datasources/{name}")
    assert detail.status_code == 200
    assert "Uploading" in detail.text
    assert "<td>submit</td>" in detail.text and "<td>collect-start</td>" in detail.text, "history from the audit log"

    # Bad input: the form comes back with the API's message, nothing made.
    before = len(site.api("GET", "/api/v1/datasources", user="res").json()["items"])
    page = b.get("/workspaces/ws1/new")
    r = b.post("/workspaces/ws1/datasources",
               {"csrf": csrf(page.text, "/workspaces/ws1/datasources"), "displayName": ""})
    assert r.status_code == 400 and "displayName" in r.text
    r = b.post("/workspaces/ws1/datasources",
               {"csrf": csrf(page.text, "/workspaces/ws1/datasources"), "displayName": "x",
                "contactName": "Only a contact"})
    assert r.status_code == 400 and "organisation" in r.text
    assert 'value="Only a contact"' in r.text
    assert len(site.api("GET", "/api/v1/datasources", user="res").json()["items"]) == before


def test_state_changes_need_the_csrf_token_and_our_origin(site):
    b = Browser(site)
    b.login("res")
    page = b.get("/workspaces/ws1/new")
    token = csrf(page.text, "/workspaces/ws1/datasources")
    fields = {"displayName": "csrf probe"}
    count = lambda: len(site.api("GET", "/api/v1/datasources", user="res").json()["items"])  # noqa: E731
    before = count()

    r = b.post("/workspaces/ws1/datasources", fields)
    assert r.status_code == 403
    r = b.post("/workspaces/ws1/datasources", dict(fields, csrf="A" * 43))
    assert r.status_code == 403
    # Another session's token is no good either.
    other = Browser(site)
    other.login("both")
    other_token = csrf(other.get("/workspaces/ws1/new").text, "/workspaces/ws1/datasources")
    assert other_token != token
    assert b.post("/workspaces/ws1/datasources", dict(fields, csrf=other_token)).status_code == 403
    # The right token from another site (Origin or Referer), or from an
    # opaque origin, is refused.
    for hdrs in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                 {"Referer": "https://evil.example/page"}, {"Origin": site.url + ".evil.example"}):
        assert b.post("/workspaces/ws1/datasources", dict(fields, csrf=token), headers=hdrs).status_code == 403
    # PUT and DELETE are state changes too.
    for method in ("PUT", "DELETE"):
        r = b.s.request(method, site.url + "/workspaces/ws1/datasources", data=fields, allow_redirects=False)
        assert r.status_code == 403
    assert count() == before, "nothing was created"

    # Our own origin, with the token: accepted.
    r = b.post("/workspaces/ws1/datasources", dict(fields, csrf=token), headers={"Origin": site.url})
    assert r.status_code == 303
    assert count() == before + 1


def test_script_in_display_name_renders_inert(site):
    b = Browser(site)
    b.login("res")
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    name, _ = create_via_form(b, displayName=evil, description="</textarea><script>alert(3)</script>")
    for path in ("/workspaces/ws1", f"/workspaces/ws1/datasources/{name}",
                 f"/workspaces/ws1/datasources/{name}/upload"):
        r = b.get(path)  # Browser._check: no <script, no on...= attribute
        assert r.status_code == 200
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in r.text
    assert site.ds(name, user="res")["spec"]["displayName"] == evil


def test_other_workspaces_datasources_answer_404(site):
    res = Browser(site)
    res.login("res")
    name, _ = create_via_form(res)
    site.wait_stage(name, "Uploading")

    other = Browser(site)
    other.login("other")
    for path in (f"/workspaces/ws1/datasources/{name}", f"/workspaces/ws1/datasources/{name}/upload",
                 "/workspaces/ws1", "/workspaces/ws1/new", "/workspaces/nope",
                 f"/workspaces/ws2/datasources/{name}"):
        r = other.get(path)
        assert r.status_code == 404, path
        assert "not found" in r.text
        assert "An uploaded example dataset" not in r.text
    page = other.get("/workspaces/ws2/new")
    r = other.post(f"/workspaces/ws1/datasources/{name}/uploaded",
                   {"csrf": csrf(page.text, "/workspaces/ws2/datasources")})
    assert r.status_code == 404
    assert site.ds(name)["status"]["stage"] == "Uploading"
    # Its own workspace's page may not show it under another workspace's URL.
    r = res.get(f"/workspaces/ws2/datasources/{name}")
    assert r.status_code == 404
    assert res.get("/no/such/page").status_code == 404


def test_approver_queue_approve_and_reject(site):
    res = Browser(site)
    res.login("res")
    name, _ = create_via_form(res)
    files = {"patients.csv": b"id,name\n1,Ann\n2,Bob\n", "sub/visits.csv": b"id,when\n1,2024-01-02\n"}
    ds = upload_and_confirm(site, res, name, files)
    digest = ds["status"]["manifest"]["digest"]

    appr = Browser(site)
    appr.login("appr")
    home = appr.get("/")
    assert 'href="/approvals"' in home.text
    queue = appr.get("/approvals")
    assert queue.status_code == 200
    assert f'href="/approvals/{name}"' in queue.text
    assert "An uploaded example dataset" in queue.text and "res" in queue.text

    review = appr.get(f"/approvals/{name}")
    assert review.status_code == 200
    for f, content in files.items():
        assert f"<code>{f}</code>" in review.text
        assert hashlib.sha256(content).hexdigest() in review.text
    assert digest in review.text
    assert "Automated checks" in review.text and "passed" in review.text
    for action in ("submit", "collect-start", "upload-complete", "checks-passed"):
        assert f"<td>{action}</td>" in review.text, action
    fields = form_fields(review.text, f"/approvals/{name}")
    assert fields["decision"] in ("approve", "reject")

    # The approve form binds the digest the approver saw.
    approve = [f for f in re.findall(r'<form[^>]*action="/approvals/[^"]*"[^>]*>(.*?)</form>', review.text, re.S)
               if 'value="approve"' in f][0]
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', approve))
    assert hidden["digest"] == digest
    # Without the token: refused, nothing decided.
    r = appr.post(f"/approvals/{name}", {k: v for k, v in hidden.items() if k != "csrf"})
    assert r.status_code == 403
    assert site.ds(name)["status"]["stage"] == "AwaitingApproval"
    # A stale digest: the API's 409 as a page.
    r = appr.post(f"/approvals/{name}", dict(hidden, digest="0" * 64))
    assert r.status_code == 409 and "changed" in r.text
    r = appr.post(f"/approvals/{name}", hidden)
    assert r.status_code == 303 and r.headers["Location"] == f"/approvals/{name}"
    st = site.ds(name)["status"]
    assert st["stage"] in ("Approved", "Published")
    assert any(x["user"] == "appr" and x["decision"] == "approve" and x["digest"] == digest
               for x in st["approvals"])
    after = appr.get(f"/approvals/{name}")
    assert "appr" in after.text and "approve" in after.text
    assert 'value="approve"' not in after.text, "nothing left to decide"

    # The researcher sees it approved.
    site.wait_stage(name, "Published")
    detail = res.get(f"/workspaces/ws1/datasources/{name}")
    assert "Published" in detail.text and "appr" in detail.text

    # A second one is rejected, with a reason the requester sees.
    name2, _ = create_via_form(res, displayName="second")
    upload_and_confirm(site, res, name2, {"a.csv": b"x\n1\n"})
    review = appr.get(f"/approvals/{name2}")
    reject = [f for f in re.findall(r'<form[^>]*action="/approvals/[^"]*"[^>]*>(.*?)</form>', review.text, re.S)
              if 'value="reject"' in f][0]
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', reject))
    r = appr.post(f"/approvals/{name2}", hidden)
    assert r.status_code == 400 and "reason" in r.text
    r = appr.post(f"/approvals/{name2}", dict(hidden, reason="Contains <b>identifiers</b>\r\nRemove them"))
    assert r.status_code == 303
    st = site.ds(name2)["status"]
    assert st["stage"] in ("Rejected", "Purged")
    assert st["message"] == "Contains <b>identifiers</b>\nRemove them"
    detail = res.get(f"/workspaces/ws1/datasources/{name2}")
    assert "Contains &lt;b&gt;identifiers&lt;/b&gt;\nRemove them" in detail.text


def test_requester_cannot_approve_their_own(site):
    both = Browser(site)
    both.login("both")
    name, _ = create_via_form(both)
    ds = upload_and_confirm(site, both, name, {"data.csv": b"a,b\n1,2\n"})
    queue = both.get("/approvals")
    assert f'href="/approvals/{name}"' in queue.text
    review = both.get(f"/approvals/{name}")
    assert "another person must decide" in review.text
    assert 'value="approve"' not in review.text
    # Forcing the form anyway: the gates' segregation of duties says no.
    r = both.post(f"/approvals/{name}", {"csrf": csrf(review.text, "/logout"), "decision": "approve",
                                         "digest": ds["status"]["manifest"]["digest"]})
    assert r.status_code == 403
    assert "cannot decide" in r.text
    assert site.ds(name)["status"]["stage"] == "AwaitingApproval"
    assert not site.ds(name)["status"].get("approvals")


def test_pages_have_the_policy_and_no_javascript(site):
    b = Browser(site)
    r = b.get("/login")
    b.login("res")
    name, upload = create_via_form(b)
    site.wait_stage(name, "Uploading")
    for path in ("/", "/workspaces/ws1", "/workspaces/ws1/new", f"/workspaces/ws1/datasources/{name}", upload,
                 "/no-such-page"):
        b.get(path)  # Browser._check asserts the CSP and the absence of scripts
    assert len(b.pages) >= 7
    # The stylesheet is the airlock's own (style-src 'self'), under the
    # server's stricter default policy.
    css = b.s.get(site.url + "/static/airlock.css", timeout=10)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert css.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "@media" in css.text  # the small-screen layout
    # The icon: named by every page (img-src 'self'), and at /favicon.ico,
    # which browsers ask for by themselves, instead of a 404.
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in r.text
    for path in ("/static/favicon.svg", "/favicon.ico"):
        icon = b.s.get(site.url + path, timeout=10)
        assert icon.status_code == 200, path
        assert icon.headers["Content-Type"] == "image/svg+xml"
        assert icon.text.startswith("<svg ") and "<script" not in icon.text
        assert icon.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    # Referrer-Policy lets our own form posts carry an Origin.
    assert r.headers["Referrer-Policy"] == "same-origin"
    assert r.headers["X-Frame-Options"] == "DENY"
    # The API keeps its own headers and JSON errors.
    api = requests.get(site.url + "/api/v1/whoami", timeout=10)
    assert api.status_code == 401 and api.headers["Content-Type"].startswith("application/json")


def test_https_external_url_makes_cookies_secure(airlock_factory):
    a = airlock_factory("web:\n  externalUrl: https://airlock.example/\n  sessionIdleSeconds: 600\n")
    a.login("admin")
    s = requests.Session()
    page = s.get(a.url + "/login", timeout=10)
    pre = page.headers["Set-Cookie"]
    assert pre.startswith("__Host-airlock_login=") and "; Secure" in pre
    token = csrf(page.text)
    jar = {"__Host-airlock_login": pre.split(";")[0].split("=", 1)[1]}
    form = {"csrf": token, "username": "admin", "password": a.admin_password}
    # Forms must come from the external origin now, not from whatever Host was used.
    r = requests.post(a.url + "/login", data=form, cookies=jar, headers={"Origin": a.url},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 403
    r = requests.post(a.url + "/login", data=form, cookies=jar, allow_redirects=False, timeout=30,
                      headers={"Origin": "https://airlock.example"})
    assert r.status_code == 303, r.text
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("__Host-airlock_session=")
    for flag in ("; Secure", "; HttpOnly", "; SameSite=Lax", "; Path=/"):
        assert flag in cookie
    assert "Domain" not in cookie
    sid = cookie.split(";")[0].split("=", 1)[1]
    r = requests.get(a.url + "/", cookies={"__Host-airlock_session": sid}, allow_redirects=False, timeout=10)
    assert r.status_code == 200 and "Your workspaces" in r.text
    # The plain-http name is not read on an https site.
    r = requests.get(a.url + "/", cookies={"airlock_session": sid}, allow_redirects=False, timeout=10)
    assert r.status_code == 303


TWO_REVIEWS = """
gates:
  review:
  - {type: data-approver, role: approver}
  - {type: information-governance, role: approver}
"""


def test_one_person_is_offered_one_approval_type(airlock_factory):
    """With two review approval types an approver may give either, but not
    both (gates.c: each from a different person): after approving as one,
    the review page offers no Approve for the other and says who must give
    it; Reject stays. A second approver then completes the review."""
    a = airlock_factory(TWO_REVIEWS)
    a.login("admin")
    a.cli("workspace", "create", "ws1")
    a.add_user("res", "researcher", workspaces=["ws1"])
    a.add_user("appr", "approver")
    a.add_user("appr2", "approver")
    res = Browser(a)
    res.login("res")
    name, _ = create_via_form(res)
    upload_and_confirm(a, res, name, {"a.csv": b"x\n1\n"})
    a.wait_stage(name, "AwaitingApproval")

    appr = Browser(a)
    appr.login("appr")
    review = appr.get(f"/approvals/{name}")
    assert review.status_code == 200
    options = re.findall(r'<select id="approve-type" name="type">(.*?)</select>', review.text, re.S)
    assert options and 'value="data-approver"' in options[0] and 'value="information-governance"' in options[0]
    fields = form_fields(review.text, f"/approvals/{name}")
    fields.update({"type": "data-approver"})
    r = appr.post(f"/approvals/{name}", fields)
    assert r.status_code == 303, r.text

    review = appr.get(f"/approvals/{name}")
    assert review.status_code == 200
    assert 'value="approve"' not in review.text and 'id="approve-type"' not in review.text
    assert ("You have approved as data-approver; another person must give information-governance."
            in review.text)
    assert 'value="reject"' in review.text  # rejecting is still theirs to do
    # Forcing the other type anyway: the gates refuse, as the page said.
    forced = dict(fields, type="information-governance")
    r = appr.post(f"/approvals/{name}", forced)
    assert r.status_code == 403 and "different person" in r.text
    assert a.ds(name)["status"]["stage"] == "AwaitingApproval"

    # Another approver is offered exactly the missing type, and completes it.
    appr2 = Browser(a)
    appr2.login("appr2")
    review = appr2.get(f"/approvals/{name}")
    assert "You have approved" not in review.text
    approve = [f for f in re.findall(r'<form[^>]*action="/approvals/[^"]*"[^>]*>(.*?)</form>', review.text, re.S)
               if 'value="approve"' in f][0]
    assert '<input type="hidden" name="type" value="information-governance">' in approve
    hidden = {n: unescape(v) for n, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', approve)}
    r = appr2.post(f"/approvals/{name}", hidden)
    assert r.status_code == 303, r.text
    a.wait_stage(name, "Published")
