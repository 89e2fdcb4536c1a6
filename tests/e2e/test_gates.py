"""Approvals: required types each by a different person, never the requester,
bound to the manifest digest; data that changes after approval is caught."""
import time

from conftest import datasource_yaml, make_source_db

TWO_REVIEWS = """
gates:
  request:
  - {type: information-governance, role: approver}
  - {type: data-engineer, role: data-engineer}
  review:
  - {type: data-approver, role: approver}
  - {type: information-governance, role: approver}
"""


def setup(a, tmp_path, name="gated"):
    a.login("admin")
    a.cli("workspace", "create", "ws1")
    a.add_user("eng", "data-engineer", workspaces=["ws1"])
    a.add_user("eng2", "data-engineer")
    a.add_user("appr", "approver")
    a.add_user("appr2", "approver")
    db = make_source_db(tmp_path / f"{name}.db")
    (tmp_path / f"{name}.yaml").write_text(datasource_yaml(name, db))
    a.cli("apply", "-f", tmp_path / f"{name}.yaml", "--workspace", "ws1", user="eng")


def decide(a, name, user, **body):
    return a.api("POST", f"/api/v1/datasources/{name}/approvals", user=user, json=body)


def test_request_gate_needs_each_type_from_a_different_person(airlock_factory, tmp_path):
    a = airlock_factory(TWO_REVIEWS)
    setup(a, tmp_path)
    ds = a.ds("gated")
    assert ds["status"]["stage"] == "AwaitingRequestApproval"
    assert ds["status"]["dataState"] == "Pending"
    time.sleep(0.5)
    assert a.ds("gated")["status"]["stage"] == "AwaitingRequestApproval", "nothing collected before sign-off"

    # The requester may not sign off, even holding the right role.
    r = decide(a, "gated", "eng", decision="approve", type="data-engineer")
    assert r.status_code == 403 and "requested this datasource" in r.json()["error"]["message"]
    # Role must match the type.
    r = decide(a, "gated", "appr", decision="approve", type="data-engineer")
    assert r.status_code == 403
    r = decide(a, "gated", "appr", decision="approve", type="information-governance")
    assert r.status_code == 200, r.text
    assert r.json()["status"]["stage"] == "AwaitingRequestApproval"
    # The same type twice is refused.
    r = decide(a, "gated", "appr2", decision="approve", type="information-governance")
    assert r.status_code == 409
    r = decide(a, "gated", "eng2", decision="approve", type="data-engineer")
    assert r.status_code == 200, r.text
    assert r.json()["status"]["dataState"] == "READY"
    a.wait_stage("gated", "AwaitingApproval")


def test_review_approvals_are_bound_to_the_digest(airlock_factory, tmp_path):
    a = airlock_factory(TWO_REVIEWS)
    setup(a, tmp_path)
    decide(a, "gated", "appr", decision="approve", type="information-governance")
    decide(a, "gated", "eng2", decision="approve", type="data-engineer")
    ds = a.wait_stage("gated", "AwaitingApproval")
    digest = ds["status"]["manifest"]["digest"]

    r = decide(a, "gated", "appr", decision="approve")
    assert r.status_code == 400 and "digest" in r.json()["error"]["message"]
    r = decide(a, "gated", "appr", decision="approve", digest="0" * 64)
    assert r.status_code == 409 and "changed" in r.json()["error"]["message"]
    r = decide(a, "gated", "appr", decision="approve", type="data-approver", digest=digest)
    assert r.status_code == 200, r.text
    # One person cannot give both review approvals.
    r = decide(a, "gated", "appr", decision="approve", type="information-governance", digest=digest)
    assert r.status_code == 403 and "different person" in r.json()["error"]["message"]

    # The staged data changes behind the approvers' backs ...
    staged = a.data / "staging" / f"ds-{ds['metadata']['uid']}" / "attendances.csv"
    staged.write_text(staged.read_text() + "999,1,2024-12-31\r\n")
    r = decide(a, "gated", "appr2", decision="approve", type="information-governance", digest=digest)
    assert r.status_code == 200
    # ... so publishing finds the mismatch, re-checks, and the approvals no longer count.
    deadline = time.time() + 30
    while time.time() < deadline:
        ds = a.ds("gated")
        if ds["status"]["stage"] == "AwaitingApproval" and ds["status"]["manifest"]["digest"] != digest:
            break
        time.sleep(0.1)
    assert ds["status"]["manifest"]["digest"] != digest
    assert not (a.data / "workspaces" / "ws1" / "gated").exists()
    r = decide(a, "gated", "appr", decision="approve", type="data-approver", digest=digest)
    assert r.status_code == 409
    actions = [x["action"] for x in a.audit() if x.get("object", {}).get("name") == "gated"]
    assert "data-changed" in actions


def test_illegal_transitions_change_nothing(airlock, workspace, tmp_path):
    db = make_source_db(tmp_path / "s.db")
    (tmp_path / "ds.yaml").write_text(datasource_yaml("flow", db))
    airlock.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", workspace, user="eng")
    ds = airlock.wait_stage("flow", "AwaitingApproval")
    before = airlock.audit()
    r = airlock.api("POST", "/api/v1/datasources/flow/retry", user="eng")
    assert r.status_code == 409 and "retry" in r.json()["error"]["message"]
    r = airlock.api("POST", "/api/v1/datasources/flow/uploaded", user="eng")
    assert r.status_code == 409
    r = decide(airlock, "flow", "appr", decision="maybe")
    assert r.status_code == 400
    r = decide(airlock, "flow", "appr", decision="reject")
    assert r.status_code == 400 and "reason" in r.json()["error"]["message"]
    r = decide(airlock, "flow", "eng", decision="approve", digest=ds["status"]["manifest"]["digest"])
    assert r.status_code in (403, 404)
    assert airlock.ds("flow") == ds
    assert airlock.audit() == before
