"""Airlock's web pages in a real browser: Debian's Chromium driven by
playwright-core (tests/browser/*.mjs) against a real `airlock serve`. People
log in through the forms, create and confirm an upload, approve from the
queue; the same pages on a phone-sized screen; and what a browser must refuse
(script in a display name, a cross-site form). Every step is screenshotted
(docs/testing-browser.md says where)."""
import hashlib

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
        t.upload(path, data, pieces=2)
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
