"""Airlock's web pages in a real browser: Debian's Chromium driven by
playwright-core (tests/browser/*.mjs) against a real `airlock serve`. People
log in through the forms, create and confirm an upload, approve from the
queue; the same pages on a phone-sized screen; and what a browser must refuse
(script in a display name, a cross-site form). Every step is screenshotted
(docs/testing-browser.md says where)."""
import hashlib
import http.server
import json
import threading
import time

import pytest

from browser import run_scenario
from tus_client import Tus

WS = "ws-browser"
WS_TITLE = "Clinic research workspace"
# Two review approval types, each needing a different approver: the queue's
# "As" choice and the second approver are part of the flow.
TWO_REVIEWERS = """
gates:
  review:
  - {type: data-approver, role: approver}
  - {type: information-governance, role: approver}
"""

FILES = {
    "answers.csv": b"id,answer\n1,yes\n2,no\n3,\"maybe, later\"\n",
    "folder/notes.txt": "Notes with UTF-8: \u00d1o\u00f1o, \u00e6\u00f8\u00e5\n".encode(),
    "folder/sub/blob.json": b'{"values": [' + b",".join(str(i).encode() for i in range(5000)) + b"]}\n",
}


def people(a, *approvers):
    a.login("admin")
    a.cli("workspace", "create", WS, "--display-name", WS_TITLE)
    a.add_user("res", "researcher", workspaces=[WS])
    for u in approvers:
        a.add_user(u, "approver")
    return {u: a.passwords[u] for u in ("res", *approvers)}


def tus_upload(a, name, user="res", files=FILES):
    """The files, with the tus API and `user`'s bearer token; path -> sha256."""
    t = Tus(a.url, f"/api/v1/datasources/{name}/uploads", {"Authorization": "Bearer " + a.token(user)})
    for path, data in files.items():
        loc = t.create_file(path, data)
        off, half = 0, max(1, len(data) // 2)
        while off < len(data):
            r = t.patch(loc, off, data[off:off + half])
            # 423: the previous PATCH of this upload still holds its lock just
            # after its answer; tus clients (tus-js-client too) retry then.
            for _ in range(50):
                if r.status_code != 423:
                    break
                time.sleep(0.1)
                r = t.patch(loc, off, data[off:off + half])
            assert r.status_code == 204, f"PATCH {path} at {off}: {r.status_code} {r.text}"
            off = int(r.headers["Upload-Offset"])
    listing = t.request("GET", t.collection).json()
    got = {u["path"]: u["sha256"] for u in listing["uploads"] if u["complete"]}
    want = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    assert got == want, f"the uploader lists {got}, expected {want}"
    return want


def test_upload_then_two_approvals(request, airlock_factory):
    a = airlock_factory(TWO_REVIEWERS)
    passwords = people(a, "appr", "appr2")

    def upload(msg):
        name = msg["datasource"]
        # The browser says it reached the upload page: the API agrees.
        ds = a.ds(name, user="res")
        assert ds["status"]["stage"] == "Uploading", ds["status"]
        assert ds["spec"]["type"] == "Uploaded" and ds["spec"]["displayName"] == "Clinic questionnaires 2024"
        return {"files": tus_upload(a, name)}

    result = run_scenario(request, a, "upload_approve", {
        "workspace": WS, "workspaceTitle": WS_TITLE, "researcher": "res",
        "approvers": [{"user": "appr", "type": "data-approver"},
                      {"user": "appr2", "type": "information-governance"}],
        "passwords": passwords,
    }, handlers={"upload": upload})

    name = result["data"]["datasource"]
    want = {p: hashlib.sha256(d).hexdigest() for p, d in FILES.items()}
    # Each approver saw exactly the uploaded files and the same manifest digest
    # the airlock recorded their approvals against.
    ds = a.ds(name)
    digest = ds["status"]["manifest"]["digest"]
    for m in result["data"]["manifests"]:
        assert {f["path"]: f["sha256"] for f in m["files"]} == want
        assert m["digest"] == digest
    assert ds["status"]["stage"] == result["data"]["finalStage"] == "Published"
    decided = {(x["user"], x["type"]) for x in ds["status"]["approvals"]
               if x["gate"] == "review" and x["decision"] == "approve"}
    assert decided == {("appr", "data-approver"), ("appr2", "information-governance")}, ds["status"]["approvals"]
    published = a.data / "workspaces" / WS / name
    for path, data in FILES.items():
        assert (published / path).read_bytes() == data, path
    # What the browser did is what the audit log says happened, by whom.
    acts = [(x["action"], x["actor"]["name"]) for x in a.audit() if x.get("object", {}).get("name") == name]
    for act in (("upload-complete", "res"), ("approve", "appr"), ("approve", "appr2")):
        assert act in acts, acts


def api_datasource(a, display_name, user="res"):
    """An Uploaded datasource made through the API as the form makes it (no
    name: the API gives ds-<hex>); waits for its upload area."""
    body = {
        "apiVersion": "xlscsde.nhs.uk/v1", "kind": "AnalyticsWorkspaceDataSource",
        "metadata": {"labels": {"xlscsde.nhs.uk/type": "uploaded"}},
        "spec": {"type": "Uploaded", "displayName": display_name,
                 "description": "Prepared through the API for a browser test.",
                 "publisher": {"organisation": "Some Organisation",
                               "contact": {"name": "Joe Bloggs", "role": "Research Engineer"}},
                 "project": {"id": "d4e6"}},
    }
    r = a.api("POST", f"/api/v1/datasources?workspace={WS}", user=user, json=body)
    assert r.status_code == 201, r.text
    name = r.json()["metadata"]["name"]
    a.wait_stage(name, "Uploading", user=user)
    return name


def test_phone_sized_pages(request, airlock):
    a = airlock
    passwords = people(a, "appr")
    uploading = api_datasource(a, "Still uploading")
    # Long words with no break in them are what push a narrow page sideways:
    # a display name, a file path and its hash.
    waiting = api_datasource(a, "Questionnaire_answers_of_the_spring_2024_clinic_cohort_without_spaces")
    long_path = "a_rather_deep_folder_name_for_a_phone/" + "x" * 90 + ".csv"
    tus_upload(a, waiting, files={**FILES, long_path: b"id\n1\n"})
    t = Tus(a.url, f"/api/v1/datasources/{waiting}/uploads", {"Authorization": "Bearer " + a.token("res")})
    assert t.complete().status_code == 200
    a.wait_stage(waiting, "AwaitingApproval")

    result = run_scenario(request, a, "phone", {
        "workspace": WS, "researcher": "res", "approver": "appr", "passwords": passwords,
        "uploading": uploading, "waiting": waiting,
    })
    pages = result["data"]["widths"]
    assert len(pages) == 8, sorted(pages)
    for label, w in pages.items():
        assert w["viewport"] == 390 and w["documentWidth"] <= 390, (label, w)
    assert long_path in {f["path"] for f in result["data"]["manifest"]["files"]}


HOSTILE = '<script>window.__airlockPwned=1;alert(1)</script><img src=x onerror="alert(2)">'


@pytest.fixture
def hostile_site():
    """A page on another loopback port (another origin) with forms that post
    to the airlock, as a hostile site would; `serve(airlock_url)` gives its URL."""
    servers = []

    def serve(airlock_url, ws):
        page = f"""<!DOCTYPE html><html><head><title>Not the airlock</title></head><body>
<h1>Win a prize</h1>
<form id="create" method="post" action="{airlock_url}/workspaces/{ws}/datasources">
<input type="hidden" name="displayName" value="cross-site">
<button type="submit">Claim</button></form>
<form id="create-with-token" method="post" action="{airlock_url}/workspaces/{ws}/datasources">
<input type="hidden" name="csrf" value=""><input type="hidden" name="displayName" value="cross-site-2">
<button type="submit">Claim again</button></form>
<form id="logout" method="post" action="{airlock_url}/logout">
<input type="hidden" name="csrf" value=""><button type="submit">Log out</button></form>
</body></html>""".encode()

        class Page(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]

    yield serve
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_script_stays_text_and_cross_site_forms_are_refused(request, airlock, hostile_site):
    a = airlock
    passwords = people(a)
    port = hostile_site(a.url, WS)
    before = len(a.audit())
    result = run_scenario(request, a, "security", {
        "workspace": WS, "researcher": "res", "passwords": passwords, "hostile": HOSTILE,
        # Same site (another port of 127.0.0.1: the SameSite=Lax cookie goes
        # along, so the Origin check is what refuses) and another site.
        "crossSite": [{"label": "same-site other port", "url": f"http://127.0.0.1:{port}/"},
                      {"label": "other site", "url": f"http://localhost:{port}/"}],
    })
    name = result["data"]["datasource"]
    for site in ("same-site other port", "other site"):
        for form in ("create", "create-with-token", "logout"):
            assert result["data"][f"{site} {form}"] == 403
    # The display name was stored as typed, and nothing else was created.
    assert a.ds(name, user="res")["spec"]["displayName"] == HOSTILE
    items = a.api("GET", f"/api/v1/datasources?workspace={WS}", user="res").json()["items"]
    assert [d["metadata"]["name"] for d in items] == [name]
    # Audited since the scenario started: the browser's login and the one
    # datasource; no logout, nothing "cross-site".
    new = a.audit()[before:]
    actions = [(x["action"], x["actor"]["name"]) for x in new]
    assert ("login", "res") in actions and ("logout", "res") not in actions, actions
    assert not any("cross-site" in json.dumps(x) for x in new)
