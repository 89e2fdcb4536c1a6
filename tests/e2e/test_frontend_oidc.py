"""Logging in to the web pages of `airlock serve` through Keycloak (the
authorization code flow with PKCE), against the real Keycloak of
tests/e2e/keycloak.py with the test realm (deploy/keycloak/realm-airlock.json).

The browser is a requests.Session: it follows the redirect to Keycloak's own
login page, reads that page's form as a person's browser would (its action
URL and hidden fields) and posts the username and password there; Keycloak
sends it back to the airlock's callback. Nothing of the protocol is played by
the test.

What a person would check: each realm user sees exactly the workspaces of
their groups (and of their AnalyticsWorkspaceBindings), a researcher creates
an Uploaded datasource through the form, an approver sees the queue and
decides; a tampered, missing or replayed state and a provider error log
nobody in; the cookies' flags; logout ends the airlock session and offers
Keycloak's end-session link, which ends the Keycloak session too; without
oidc settings the login page has no Keycloak link."""
import os
import re
import time
from html import unescape
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from conftest import Airlock
from keycloak import keycloak  # noqa: F401  (session fixture)
from test_frontend import Browser, create_via_form, csrf, staging_dir

PASSWORDS = {"rita": "rita-password-123", "eddie": "eddie-password-123", "alice": "alice-password-123",
             "bob": "bob-password-123", "olga": "olga-password-123"}


class KeycloakForm(HTMLParser):
    """The login form of Keycloak's page: its action and its inputs."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.action = None
        self.fields = {}
        self._in = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and a.get("id") == "kc-form-login":
            self.action = a.get("action")
            self._in = True
        elif tag == "input" and self._in and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._in = False


class LoopbackSession(requests.Session):
    """Browsers treat http://127.0.0.1 as a secure context and send Secure
    cookies there; Keycloak (plain http on loopback in the tests) relies on
    that for its own login cookies. Python's cookie jar does not, so before
    each request the loopback cookies lose the flag (requests copies the jar
    per request, so a cookie policy would not stick)."""

    def request(self, *args, **kw):
        for c in self.cookies:
            if c.domain in ("127.0.0.1", "localhost") and c.secure:
                c.secure = False
        return super().request(*args, **kw)


def browser(site):
    b = Browser(site)
    b.s = LoopbackSession()
    return b


def oidc_config(kc, root, extra=""):
    secret = root / "client-secret"
    secret.write_text(kc.client_secret + "\n")
    os.chmod(secret, 0o600)
    return (f"oidc:\n  issuer: {kc.issuer}\n  clientId: {kc.client_id}\n"
            f"  clientSecretFile: {secret}\n  leewaySeconds: 1\n{extra}")


@pytest.fixture(scope="module")
def site(keycloak, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("frontend-oidc")
    a = Airlock(root / "airlock", oidc_config(keycloak, root)).start()
    try:
        a.login("admin")
        for ws in ("gm-research", "nw-cancer"):
            a.cli("workspace", "create", ws, "--display-name", f"Workspace {ws}")
        yield a
    finally:
        a.stop()


def start_login(b):
    """GET /login/oidc: a 303 to Keycloak's authorization endpoint."""
    r = b.get("/login/oidc")
    assert r.status_code == 303, r.text
    return r


def keycloak_page(b, kc, r):  # noqa: F811
    loc = r.headers["Location"]
    assert loc.startswith(kc.issuer + "/protocol/openid-connect/auth?"), loc
    q = parse_qs(urlsplit(loc).query)
    assert q["response_type"] == ["code"] and q["client_id"] == ["airlock"]
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
    assert len(q["state"][0]) == 43 and len(q["nonce"][0]) == 43
    return b.s.get(loc, timeout=30), q


def keycloak_login(b, kc, user, r=None):  # noqa: F811
    """As a person: from the redirect to Keycloak, fill in its login page;
    returns Keycloak's redirect back to the airlock (not yet followed)."""
    page, q = keycloak_page(b, kc, r or start_login(b))
    assert page.status_code == 200, page.text[:2000]
    form = KeycloakForm()
    form.feed(page.text)
    assert form.action, f"no login form on Keycloak's page: {page.text[:2000]}"
    data = dict(form.fields)
    data.update({"username": user, "password": PASSWORDS[user]})
    back = b.s.post(unescape(form.action), data=data, allow_redirects=False, timeout=30)
    assert back.status_code == 302, keycloak_message(back.text)
    return back.headers["Location"], q


def keycloak_message(html):
    """The message of one of Keycloak's error pages, for assertion output."""
    m = re.search(r'class="[^"]*(?:instruction|kc-feedback-text|alert)[^"]*"[^>]*>([^<]*)', html)
    return m.group(1).strip() if m else html[:300]


def callback_path(b, location):
    assert location.startswith(b.a.url + "/login/callback?"), location
    return location[len(b.a.url):]


def log_in(site, kc, user):  # noqa: F811
    b = browser(site)
    location, _ = keycloak_login(b, kc, user)
    r = b.get(callback_path(b, location))
    assert r.status_code == 303 and r.headers["Location"] == "/", r.text
    return b, r


def workspaces_on_home(b):
    home = b.get("/")
    assert home.status_code == 200, home.text
    return set(re.findall(r'href="/workspaces/([a-z0-9-]+)"', home.text)), home


def logged_out(b):
    r = b.get("/")
    return r.status_code == 303 and r.headers["Location"] == "/login"


def logins(site, user):
    return sum(1 for x in site.audit() if x["action"] == "login" and x["actor"]["name"] == user)


# ---------------------------------------------------------------------------


def test_login_page_offers_keycloak_beside_the_form(site):
    b = browser(site)
    page = b.get("/login")
    assert page.status_code == 200
    # A link (form-action 'self' forbids a form redirecting off-site).
    assert re.search(r'<a class="button" href="/login/oidc">Log in with Keycloak</a>', page.text)
    assert 'action="/login/oidc"' not in page.text
    # Local accounts still log in through the form.
    assert csrf(page.text, "/login")
    b.login("admin", site.admin_password)
    assert logged_out(b) is False


def test_login_page_without_oidc_has_no_keycloak_link(airlock):
    b = Browser(airlock)
    page = b.get("/login")
    assert page.status_code == 200
    assert "Keycloak" not in page.text and "/login/oidc" not in page.text
    assert b.get("/login/oidc").status_code == 404
    assert b.get("/login/callback?code=x&state=y").status_code == 404


def test_researcher_sees_the_workspaces_of_their_groups_and_creates_a_datasource(site, keycloak):  # noqa: F811
    before = logins(site, "rita")
    b, r = log_in(site, keycloak, "rita")
    # Two cookies, one header each: the session, and the used-up pre-login
    # cookie cleared.
    cookies = r.raw.headers.getlist("Set-Cookie")
    assert len(cookies) == 2, cookies
    cookie = cookies[0]
    assert cookie.startswith("airlock_session=")
    assert cookies[1].startswith("airlock_login=;") and "Max-Age=0" in cookies[1], cookies
    assert "airlock_login" not in b.s.cookies
    for flag in ("HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie, cookie
    assert "Secure" not in cookie  # plain http on loopback
    mine, home = workspaces_on_home(b)
    assert mine == {"gm-research"}
    assert "rita" in home.text
    assert b.get("/workspaces/nw-cancer").status_code == 404
    assert b.get("/approvals").status_code == 403
    assert logins(site, "rita") == before + 1

    # The Uploaded datasource form, through the API as rita.
    name, upload = create_via_form(b, "gm-research")
    ds = site.ds(name)
    assert ds["metadata"]["labels"]["xlscsde.nhs.uk/workspace"] == "gm-research"
    assert ds["status"]["requestedBy"] == "rita"
    assert b.get(upload).status_code == 200

    # eddie's groups name both workspaces.
    e, _ = log_in(site, keycloak, "eddie")
    assert workspaces_on_home(e)[0] == {"gm-research", "nw-cancer"}


def test_approver_sees_the_queue_and_decides(site, keycloak):  # noqa: F811
    rita, _ = log_in(site, keycloak, "rita")
    name, _ = create_via_form(rita, "gm-research", displayName="For alice to review")
    ds = site.wait_stage(name, "Uploading")
    d = staging_dir(site, ds)
    (d / "table.csv").write_bytes(b"id,value\n1,2\n")
    page = rita.get(f"/workspaces/gm-research/datasources/{name}/upload")
    action = f"/workspaces/gm-research/datasources/{name}/uploaded"
    r = rita.post(action, {"csrf": csrf(page.text, action)})
    assert r.status_code == 303, r.text
    site.wait_stage(name, "AwaitingApproval")

    alice, _ = log_in(site, keycloak, "alice")
    assert workspaces_on_home(alice)[0] == {"nw-cancer"}
    queue = alice.get("/approvals")
    assert queue.status_code == 200
    assert f'href="/approvals/{name}"' in queue.text and "For alice to review" in queue.text
    review = alice.get(f"/approvals/{name}")
    assert review.status_code == 200
    fields = {n: unescape(v) for n, v in re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
        re.search(r'<form[^>]*>(.*?name="decision" value="approve".*?)</form>', review.text, re.S).group(1))}
    r = alice.post(f"/approvals/{name}", fields)
    assert r.status_code == 303, r.text
    approvals = site.ds(name)["status"].get("approvals", [])
    assert any(x.get("by") == "alice" or x.get("user") == "alice" for x in approvals), approvals


def test_user_without_workspace_sees_none_and_bindings_count(site, keycloak):  # noqa: F811
    b, _ = log_in(site, keycloak, "bob")
    mine, home = workspaces_on_home(b)
    assert mine == set()
    assert "not a member of any workspace" in home.text
    assert b.get("/workspaces/gm-research").status_code == 404
    # An AnalyticsWorkspaceBinding counts for a Keycloak user as for a bearer token.
    site.cli("workspace", "add-member", "nw-cancer", "bob")
    try:
        assert workspaces_on_home(b)[0] == {"nw-cancer"}
        assert b.get("/workspaces/nw-cancer").status_code == 200
    finally:
        site.cli("workspace", "remove-member", "nw-cancer", "bob", check=False)


def test_tampered_missing_and_replayed_state_are_refused(site, keycloak):  # noqa: F811
    before = logins(site, "rita")

    # Tampered: the pending login is used up, so the genuine answer fails too.
    b = browser(site)
    location, q = keycloak_login(b, keycloak, "rita")
    path = callback_path(b, location)
    state = q["state"][0]
    tampered = path.replace(state, ("A" if state[0] != "A" else "B") + state[1:])
    assert tampered != path
    r = b.get(tampered)
    assert r.status_code == 400 and "Login failed" in r.text and 'href="/login"' in r.text
    assert "Set-Cookie" not in r.headers
    assert b.get(path).status_code == 400
    assert logged_out(b)

    # Missing state.
    b = browser(site)
    location, q = keycloak_login(b, keycloak, "rita")
    code = parse_qs(urlsplit(location).query)["code"][0]
    r = b.get("/login/callback?code=" + code)
    assert r.status_code == 400 and "Set-Cookie" not in r.headers
    assert logged_out(b)

    # Replayed: the first use logs in, a second one (same browser or another) does not.
    b = browser(site)
    location, _ = keycloak_login(b, keycloak, "rita")
    path = callback_path(b, location)
    thief = browser(site)
    r = thief.get(path)
    assert r.status_code == 400 and "Set-Cookie" not in r.headers  # no pending login in that browser
    assert logged_out(thief)
    r = b.get(path)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    r = b.get(path)
    assert r.status_code == 400 and "Set-Cookie" not in r.headers
    assert logins(site, "rita") == before + 1


def test_provider_error_gives_a_clear_page(site, keycloak):  # noqa: F811
    b = browser(site)
    r = start_login(b)
    state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    # What Keycloak sends when the person cancels (RFC 6749 4.1.2.1).
    r = b.get(f"/login/callback?error=access_denied&error_description=%3Cb%3Ex%3C%2Fb%3E&state={state}")
    assert r.status_code == 401
    assert "cancelled" in r.text and 'href="/login"' in r.text
    assert "<b>x</b>" not in r.text and "Set-Cookie" not in r.headers
    assert logged_out(b)
    # Keycloak's own answer to a bad request reaches the same page.
    r = b.get("/login/callback?error=invalid_request&state=x")
    assert r.status_code == 401 and "invalid_request" in r.text
    # A made-up code with the right state: Keycloak refuses it.
    r = start_login(b)
    state = parse_qs(urlsplit(r.headers["Location"]).query)["state"][0]
    r = b.get(f"/login/callback?code=not-a-code&state={state}")
    assert r.status_code == 401 and "refused" in r.text and "Set-Cookie" not in r.headers
    assert logged_out(b)


def test_logout_ends_the_session_and_offers_keycloak_logout(site, keycloak):  # noqa: F811
    b, _ = log_in(site, keycloak, "rita")
    _, home = workspaces_on_home(b)
    old = dict(b.s.cookies)["airlock_session"]
    assert b.post("/logout", {}).status_code == 403
    r = b.post("/logout", {"csrf": csrf(home.text, "/logout")})
    assert r.status_code == 200, r.text
    assert "airlock_session=;" in r.headers["Set-Cookie"] and "Max-Age=0" in r.headers["Set-Cookie"]
    assert "Log out" not in re.sub(r"Log out of Keycloak", "", r.text)  # no session nav any more
    link = unescape(re.search(r'<a class="button" id="oidc-logout" href="([^"]+)"', r.text).group(1))
    assert link.startswith(keycloak.issuer + "/protocol/openid-connect/logout?")
    q = parse_qs(urlsplit(link).query)
    assert q["client_id"] == ["airlock"]
    assert q["post_logout_redirect_uri"] == [site.url + "/login"]
    assert q["id_token_hint"][0].count(".") == 2
    # The old cookie is worth nothing.
    stale = requests.get(site.url + "/", cookies={"airlock_session": old}, allow_redirects=False, timeout=30)
    assert stale.status_code == 303 and stale.headers["Location"] == "/login"
    assert any(x["action"] == "logout" and x["actor"]["name"] == "rita" for x in site.audit())

    # Before following the link Keycloak still knows rita: a new login needs no password.
    sso = b.s.get(start_login(b).headers["Location"], allow_redirects=False, timeout=30)
    assert sso.status_code == 302, keycloak_message(sso.text)
    r = b.get(callback_path(b, sso.headers["Location"]))
    assert r.status_code == 303 and r.headers["Location"] == "/"
    _, home = workspaces_on_home(b)
    r = b.post("/logout", {"csrf": csrf(home.text, "/logout")})
    link = unescape(re.search(r'id="oidc-logout" href="([^"]+)"', r.text).group(1))
    out = b.s.get(link, allow_redirects=False, timeout=30)
    assert out.status_code == 302 and out.headers["Location"] == site.url + "/login", out.text[:1000]
    # Now Keycloak asks for the password again.
    page = b.s.get(start_login(b).headers["Location"], allow_redirects=False, timeout=30)
    assert page.status_code == 200 and 'id="kc-form-login"' in page.text


def test_https_external_url_makes_the_cookies_secure(keycloak, tmp_path):  # noqa: F811
    a = Airlock(tmp_path / "airlock", oidc_config(keycloak, tmp_path, "web:\n  externalUrl: https://airlock.test\n"))
    a.start()
    try:
        a.login("admin")
        a.cli("workspace", "create", "gm-research")
        s = LoopbackSession()
        r = s.get(a.url + "/login/oidc", allow_redirects=False, timeout=30)
        assert r.status_code == 303
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith("__Host-airlock_login=")
        for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert flag in cookie, cookie
        assert "Domain" not in cookie
        pending = cookie.split(";")[0].split("=", 1)[1]
        q = parse_qs(urlsplit(r.headers["Location"]).query)
        assert q["redirect_uri"] == ["https://airlock.test/login/callback"]
        # Keycloak's page and its redirect to the (https) callback.
        page = s.get(r.headers["Location"], timeout=30)
        form = KeycloakForm()
        form.feed(page.text)
        data = dict(form.fields)
        data.update({"username": "rita", "password": PASSWORDS["rita"]})
        back = s.post(unescape(form.action), data=data, allow_redirects=False, timeout=30)
        assert back.status_code == 302
        location = back.headers["Location"]
        assert location.startswith("https://airlock.test/login/callback?")
        # What the TLS proxy in front of the airlock would pass on.
        r = requests.get(a.url + location[len("https://airlock.test"):], allow_redirects=False, timeout=30,
                         headers={"Cookie": f"__Host-airlock_login={pending}"})
        assert r.status_code == 303, r.text
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith("__Host-airlock_session=")
        for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert flag in cookie, cookie
        session = cookie.split(";")[0].split("=", 1)[1]
        home = requests.get(a.url + "/", headers={"Cookie": f"__Host-airlock_session={session}"}, timeout=30,
                            allow_redirects=False)
        assert home.status_code == 200 and 'href="/workspaces/gm-research"' in home.text
    finally:
        a.stop()


class ShortTokens:
    """The airlock client's access tokens made short-lived (Keycloak's
    client attribute access.token.lifespan) for the length of a test, then
    restored."""

    def __init__(self, kc, seconds):
        self.kc = kc
        self.seconds = seconds

    def __enter__(self):
        r = self.kc.admin("GET", "/clients", params={"clientId": self.kc.client_id})
        assert r.status_code == 200, r.text
        self.id = r.json()[0]["id"]
        self.client = self.kc.admin("GET", f"/clients/{self.id}").json()
        changed = dict(self.client, attributes=dict(self.client.get("attributes") or {}))
        changed["attributes"]["access.token.lifespan"] = str(self.seconds)
        r = self.kc.admin("PUT", f"/clients/{self.id}", json=changed)
        assert r.status_code == 204, r.text
        return self

    def __exit__(self, *exc):
        r = self.kc.admin("PUT", f"/clients/{self.id}", json=self.client)
        assert r.status_code == 204, r.text


def test_session_outlives_the_access_token_and_ends_when_keycloak_ends_it(site, keycloak):  # noqa: F811
    lifespan = 8
    with ShortTokens(keycloak, lifespan):
        b, _ = log_in(site, keycloak, "rita")
        old = dict(b.s.cookies)["airlock_session"]
        name, _ = create_via_form(b, "gm-research", displayName="A long upload")
        site.wait_stage(name, "Uploading")
        mine, home = workspaces_on_home(b)
        assert mine == {"gm-research"}
        token = csrf(home.text, "/logout")
        # Activity for more than twice the access token's life: every page,
        # and the uploader's routes the upload widget calls with the session
        # cookie, are served on the same session (same cookie, same CSRF token).
        t0 = time.time()
        while time.time() - t0 < 2.5 * lifespan:
            time.sleep(3)
            mine, home = workspaces_on_home(b)
            assert mine == {"gm-research"}, "the session ended with its first access token"
            r = b.s.get(f"{site.url}/api/v1/datasources/{name}/uploads", timeout=30)
            assert r.status_code == 200 and r.json()["uploads"] == [], r.text
        assert dict(b.s.cookies)["airlock_session"] == old
        assert csrf(home.text, "/logout") == token

        # Keycloak ends rita's sessions (an administrator's "log out", a
        # disabled account): at the next refresh the airlock session ends.
        users = keycloak.admin("GET", "/users", params={"username": "rita", "exact": "true"}).json()
        r = keycloak.admin("POST", f"/users/{users[0]['id']}/logout")
        assert r.status_code == 204, r.text
        time.sleep(1)
        assert logged_out(b)
        stale = requests.get(site.url + "/", cookies={"airlock_session": old}, allow_redirects=False, timeout=30)
        assert stale.status_code == 303 and stale.headers["Location"] == "/login"
        # Logging in again works at once (Keycloak asks for the password).
        b, _ = log_in(site, keycloak, "rita")
        assert workspaces_on_home(b)[0] == {"gm-research"}
