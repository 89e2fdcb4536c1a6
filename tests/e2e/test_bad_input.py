"""Every bad input gets a clear 4xx and changes nothing."""
import json

import pytest

from conftest import datasource_yaml, make_source_db

SEED_IMPORT = datasource_yaml("bad-input-base", "/nonexistent.db")


def snapshot(a):
    return (a.api("GET", "/api/v1/datasources").json(), a.audit())


def post_ds(a, body, user="eng", ctype="application/yaml", ws="advanced-generic-workspace"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return a.api("POST", f"/api/v1/datasources?workspace={ws}", user=user, data=data,
                 headers={"Content-Type": ctype})


@pytest.mark.parametrize("body,status,needle", [
    ("apiVersion: [unclosed", 400, "line"),
    ("{\"apiVersion\": ", 400, ""),
    ("- just\n- a list\n", 400, "mapping"),
    (SEED_IMPORT.replace("type: Import", "type: Exported"), 400, "spec.type"),
    (SEED_IMPORT.replace("  displayName:", "  colour: blue\n  displayName:"), 400, "colour"),
    (SEED_IMPORT.replace("id: d4e6", "id: [1, 2]"), 400, "spec.project.id"),
    (SEED_IMPORT.replace("name: bad-input-base", "name: Bad_Name"), 400, "metadata.name"),
    (SEED_IMPORT.replace("apiVersion: xlscsde.nhs.uk/v1", "apiVersion: v1"), 400, "apiVersion"),
    (SEED_IMPORT.replace("displayName: NWSDE", "displayName: " + "x" * 300), 400, "displayName"),
    (SEED_IMPORT.replace("kind: AnalyticsWorkspaceDataSource", "kind: Pod"), 400, "kind"),
    ("", 400, "body"),
])
def test_invalid_datasources_are_refused(airlock, workspace, body, status, needle):
    before = snapshot(airlock)
    r = post_ds(airlock, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"]
    assert err["status"] == status
    assert snapshot(airlock) == before


def test_oversize_body_is_refused(airlock, workspace):
    before = snapshot(airlock)
    huge = SEED_IMPORT + "#" + "x" * (2 << 20) + "\n"
    r = post_ds(airlock, huge)
    assert r.status_code == 413
    assert snapshot(airlock) == before


def test_authentication_and_roles(airlock, workspace):
    r = airlock.api("GET", "/api/v1/datasources", user=None)
    assert r.status_code == 401 and "log in" in r.json()["error"]["message"]
    r = airlock.api("GET", "/api/v1/datasources", user=None, headers={"Authorization": "Bearer alk_nope"})
    assert r.status_code == 401
    r = airlock.api("POST", "/api/v1/login", user=None, json={"username": "eng", "password": "wrong-password"})
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid username or password"
    # A researcher may not create an Import datasource; an approver may not manage users.
    airlock.add_user("res", "researcher", workspaces=[workspace])
    before = snapshot(airlock)
    r = post_ds(airlock, SEED_IMPORT, user="res")
    assert r.status_code == 403 and "data-engineer" in r.json()["error"]["message"]
    r = airlock.api("POST", "/api/v1/users", user="appr", json={"username": "x", "password": "y" * 12, "roles": ["admin"]})
    assert r.status_code == 403
    r = airlock.api("GET", "/api/v1/audit", user="res")
    assert r.status_code == 403
    assert snapshot(airlock) == before


def test_other_workspaces_objects_are_not_found(airlock, workspace, tmp_path):
    db = make_source_db(tmp_path / "s.db")
    (tmp_path / "ds.yaml").write_text(datasource_yaml("private-data", db))
    airlock.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", workspace, user="eng")
    airlock.cli("workspace", "create", "other-workspace")
    airlock.add_user("outsider", "data-engineer", "researcher", workspaces=["other-workspace"])
    # Let the operator finish its work first, so only the outsider could change anything.
    airlock.wait_stage("private-data", "AwaitingApproval")
    before = snapshot(airlock)
    for method, path in [("GET", "/api/v1/datasources/private-data"),
                         ("GET", "/api/v1/datasources/private-data/manifest"),
                         ("DELETE", "/api/v1/datasources/private-data"),
                         ("POST", "/api/v1/datasources/private-data/retry"),
                         ("GET", f"/api/v1/workspaces/{workspace}")]:
        r = airlock.api(method, path, user="outsider")
        assert r.status_code == 404, (method, path, r.text)
    assert airlock.api("GET", "/api/v1/datasources", user="outsider").json()["items"] == []
    r = post_ds(airlock, SEED_IMPORT, user="outsider", ws=workspace)
    assert r.status_code == 404
    r = airlock.cli("get", "datasource", "private-data", user="outsider", check=False)
    assert r.returncode == 1 and "not found" in r.stderr
    assert snapshot(airlock) == before


def test_spec_cannot_change_after_submission(airlock, workspace, tmp_path):
    db = make_source_db(tmp_path / "s.db")
    (tmp_path / "ds.yaml").write_text(datasource_yaml("fixed-spec", db))
    airlock.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", workspace, user="eng")
    airlock.wait_stage("fixed-spec", "AwaitingApproval")
    before = snapshot(airlock)
    (tmp_path / "ds.yaml").write_text(datasource_yaml("fixed-spec", db, tables=("patients",)))
    r = airlock.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", workspace, user="eng", check=False)
    assert r.returncode == 1 and "cannot change" in r.stderr
    assert snapshot(airlock) == before
    r = airlock.cli("apply", "-f", tmp_path / "nonexistent.yaml", user="eng", check=False)
    assert r.returncode == 1
