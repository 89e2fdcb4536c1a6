"""The whole manual-ingress flow in a real browser, with the real Keycloak:
a researcher logs in on Keycloak's own login page, creates an Uploaded
datasource through the form, uploads files and a folder through the upload
widget (src/web/assets/upload.js), pauses and resumes one file, and keeps
uploading a large one while `airlock serve` is killed with SIGKILL and
started again on the same address and data directory; the widget's own
retry resumes that file from the uploader's durable offset, without a
reload. Then "All files uploaded", two approvers (each logged in through
Keycloak in their own browser context) approve, and the researcher sees the
datasource Published. Every step is screenshotted (docs/testing-browser.md).

The browser steps are tests/browser/keycloak_upload.mjs; this side writes the
files, plays the operator's hands (kill -9, restart, reading the uploader's
state on disk) when the scenario asks, and checks the result through the API
and on disk."""
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from browser import run_scenario
from conftest import Airlock
from keycloak import keycloak  # noqa: F401  (session fixture)
from test_frontend_oidc import oidc_config

WS = "gm-research"
WS_TITLE = "GM research workspace"
# The realm's people (deploy/keycloak/realm-airlock.json): rita (researcher,
# group gm-research) requests; alice (realm role approver) and olga (client
# role admin) each give one of two review approval types. The requester can
# never decide, and nobody gives two types.
GATES = """
gates:
  review:
  - {type: data-approver, role: approver}
  - {type: information-governance, role: admin}
"""
APPROVERS = [{"user": "alice", "type": "data-approver"},
             {"user": "olga", "type": "information-governance"}]

MIB = 1 << 20
BIG_BYTES = 256 * MIB    # four of the widget's 64 MiB PATCHes
PAUSE_BYTES = 16 * MIB
# Chromium's upload rate while the large and the paused file go (bytes/s):
# slow enough that the kill and the pause land mid-file on any machine,
# fast enough that the whole test stays within a minute or two.
BIG_RATE = 32 * MIB
PAUSE_RATE = 4 * MIB


def write_random(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MIB))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def make_files(root: Path):
    """The researcher's files on "their computer": relative path in the
    datasource -> (local path, sha256, size); and the folder to choose."""
    src = root / "researcher-files"
    src.mkdir()
    want = {}

    def put(rel, data, local=None):
        p = local or (src / rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        want[rel] = (p, hashlib.sha256(data).hexdigest(), len(data))

    # Chosen one by one with the file chooser.
    put("answers.csv", b"id,answer\n1,yes\n2,no\n3,\"maybe, later\"\n")
    put("cohort-\u00f1o\u00f1o.txt", "Notes with UTF-8: \u00d1o\u00f1o, \u00e6\u00f8\u00e5\n".encode())
    put("table.json", b'{"values": [' + b",".join(str(i).encode() for i in range(20000)) + b"]}\n")
    # A folder with a subfolder, chosen with the folder chooser; .DS_Store
    # is what a Mac leaves in every folder: the widget leaves it out.
    put("clinic/visits.csv", b"visit,date\n1,2024-03-01\n2,2024-03-02\n")
    put("clinic/sub/labs.csv", b"lab,value\nhb,13.5\n" * 1000)
    (src / "clinic" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 64)
    # The file paused and resumed, and the large one.
    p = src / "paused.csv"
    want["paused.csv"] = (p, write_random(p, PAUSE_BYTES), PAUSE_BYTES)
    p = src / "imaging-export.csv"
    want["imaging-export.csv"] = (p, write_random(p, BIG_BYTES), BIG_BYTES)
    return src, want


def upload_info(a, uid: str, path: str) -> dict:
    """The uploader's own record of the upload of `path` (info.json), read
    from the staging volume: it is what survives a kill -9."""
    d = a.data / "staging" / f"ds-{uid}" / ".uploads"
    for info in d.glob("*/info.json"):
        j = json.loads(info.read_text())
        if j.get("path") == path:
            return j
    raise AssertionError(f"no upload of {path} in {d}")


def settled_offset(a, uid: str, path: str, quiet=0.5, timeout=20.0) -> int:
    """The durable offset of `path` once it stopped moving for `quiet`
    seconds (a paused upload's last request is still being recorded for a
    moment after the browser let it go)."""
    deadline = time.monotonic() + timeout
    last = upload_info(a, uid, path)["offset"]
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = upload_info(a, uid, path)["offset"]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise AssertionError(f"the offset of {path} kept moving for {timeout} s (last {last})")


@pytest.fixture
def site(keycloak, tmp_path):  # noqa: F811
    a = Airlock(tmp_path / "airlock", oidc_config(keycloak, tmp_path, GATES))
    a.start(timeout=60)
    try:
        a.login("admin")
        a.cli("workspace", "create", WS, "--display-name", WS_TITLE)
        yield a
    finally:
        a.stop()
        # pytest keeps the last runs' directories: not three copies of the
        # large file each (serve.log and the browser artifacts stay).
        shutil.rmtree(a.data, ignore_errors=True)
        shutil.rmtree(tmp_path / "researcher-files", ignore_errors=True)


def test_keycloak_login_widget_upload_kill9_resume_and_two_approvals(request, site, keycloak, tmp_path):  # noqa: F811
    a = site
    src, want = make_files(tmp_path)
    users = keycloak.users
    uid = {}
    killed = {}

    def uid_of(name):
        if name not in uid:
            uid[name] = a.ds(name)["metadata"]["uid"]
        return uid[name]

    def uploading(msg):
        # The browser says it reached the widget: the API agrees.
        ds = a.ds(msg["datasource"])
        assert ds["status"]["stage"] == "Uploading", ds["status"]
        assert ds["status"]["requestedBy"] == "rita", ds["status"]
        uid_of(msg["datasource"])
        return {}

    def offset(msg):
        return {"offset": settled_offset(a, uid_of(msg["datasource"]), msg["path"])}

    def kill9(msg):
        u = uid_of(msg["datasource"])
        a.kill9()
        info = upload_info(a, u, msg["path"])
        killed.update(offset=info["offset"], length=info["length"], complete=info["complete"])
        return {"offset": info["offset"], "length": info["length"], "complete": info["complete"]}

    def restart(msg):
        a.start(timeout=60)
        return {"url": a.url}

    result = run_scenario(request, a, "keycloak_upload", {
        "workspace": WS, "workspaceTitle": WS_TITLE, "researcher": "rita",
        "approvers": APPROVERS,
        "passwords": {u: users[u]["password"] for u in ("rita", "alice", "olga")},
        "files": [str(want[p][0]) for p in ("answers.csv", "cohort-\u00f1o\u00f1o.txt", "table.json")],
        "folder": str(src / "clinic"),
        "pauseFile": str(want["paused.csv"][0]), "pauseRate": PAUSE_RATE,
        "bigFile": str(want["imaging-export.csv"][0]), "bigRate": BIG_RATE,
        "sha256": {p: w[1] for p, w in want.items()},
        "sizes": {p: w[2] for p, w in want.items()},
    }, handlers={"uploading": uploading, "offset": offset, "kill9": kill9, "restart": restart},
        timeout=600)
    data = result["data"]
    name = data["datasource"]

    # The kill landed mid-file, after at least one acknowledged PATCH, and the
    # widget carried on from there: the first PATCH after the restart started
    # at the durable offset, so less than the file was sent again.
    assert killed and not killed["complete"], killed
    assert 64 * MIB <= killed["offset"] < BIG_BYTES, killed
    big = data["big"]
    assert big["offsetAtKill"] == killed["offset"]
    assert big["resumedAt"] == killed["offset"], big
    assert big["resentBytes"] == BIG_BYTES - killed["offset"] < BIG_BYTES
    assert not big["reloaded"]
    # The uploader used its saved SHA-256 state, not a re-read of the file.
    assert "hashed its" not in a.log.read_text()
    # The paused file: nothing moved while paused, and it went on from there.
    paused = data["paused"]
    assert paused["serverOffset"] == paused["serverOffsetLater"]
    assert paused["resumedAt"] == paused["serverOffset"], paused

    # The manifest the API recorded: every file with its folder path, size
    # and SHA-256, computed by Python from the sources; no hidden file.
    ds = a.ds(name)
    manifest = {f["path"]: (f["sha256"], f["size"]) for f in ds["status"]["manifest"]["files"]}
    assert manifest == {p: (w[1], w[2]) for p, w in want.items()}, manifest
    assert not any(".DS_Store" in p for p in manifest)
    # What the approvers saw is that manifest, under the digest they approved.
    digest = ds["status"]["manifest"]["digest"]
    for m in data["manifests"]:
        assert {f["path"]: f["sha256"] for f in m["files"]} == {p: w[1] for p, w in want.items()}
        assert m["digest"] == digest
    assert ds["status"]["stage"] == data["finalStage"] == "Published"
    decided = {(x["user"], x["type"], x["digest"]) for x in ds["status"]["approvals"]
               if x["gate"] == "review" and x["decision"] == "approve"}
    assert decided == {(x["user"], x["type"], digest) for x in APPROVERS}, ds["status"]["approvals"]
    # The published bytes are the researcher's.
    published = a.data / "workspaces" / WS / name
    for rel, (local, sha, size) in want.items():
        p = published / rel
        assert p.stat().st_size == size, rel
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(4 * MIB), b""):  # noqa: B023
                h.update(block)
        assert h.hexdigest() == sha, rel
    assert not (published / "clinic" / ".DS_Store").exists()
    # The audit log names the people who did it, as Keycloak knows them.
    acts = [(x["action"], x["actor"]["name"]) for x in a.audit() if x.get("object", {}).get("name") == name]
    for act in (("upload-complete", "rita"), ("approve", "alice"), ("approve", "olga")):
        assert act in acts, acts
