"""Local accounts as an admin manages them, and sessions as people use them."""
import json


def test_user_management_and_sessions(airlock):
    airlock.login("admin")
    airlock.add_user("bob", "researcher")
    bob_token = airlock.token("bob")
    out = airlock.cli("user", "set-roles", "bob", "--role", "researcher", "--role", "approver").stdout
    assert "roles set" in out
    assert airlock.api("GET", "/api/v1/whoami", user="bob").json()["roles"] == ["researcher", "approver"]

    # A new password signs bob out everywhere; the old password no longer works.
    airlock.cli("user", "passwd", "bob", "--password-stdin", input="a-new-password-1\n")
    r = airlock.api("GET", "/api/v1/whoami", user=None, headers={"Authorization": "Bearer " + bob_token})
    assert r.status_code == 401
    r = airlock.api("POST", "/api/v1/login", user=None, json={"username": "bob", "password": airlock.passwords["bob"]})
    assert r.status_code == 401
    airlock.passwords["bob"] = "a-new-password-1"
    airlock.login("bob")

    # Disabled accounts cannot log in; enabling restores them.
    airlock.cli("user", "disable", "bob")
    r = airlock.api("POST", "/api/v1/login", user=None, json={"username": "bob", "password": "a-new-password-1"})
    assert r.status_code in (401, 403)
    airlock.cli("user", "enable", "bob")
    airlock.login("bob")

    # Bad changes are refused and change nothing.
    for body in ({"roles": ["emperor"]}, {"colour": "red"}, {}, {"disabled": "yes"}, {"password": "short"}):
        r = airlock.api("PUT", "/api/v1/users/bob", json=body)
        assert r.status_code == 400, (body, r.text)
    assert airlock.api("GET", "/api/v1/whoami", user="bob").json()["roles"] == ["researcher", "approver"]
    r = airlock.api("PUT", "/api/v1/users/admin", json={"disabled": True})
    assert r.status_code == 409
    r = airlock.api("PUT", "/api/v1/users/admin", user="bob", json={"password": "x" * 12})
    assert r.status_code == 403

    # Logging out ends the session on the server and forgets the token locally.
    token = airlock.token("bob")
    out = airlock.cli("logout", user="bob").stdout
    assert "logged out" in out
    r = airlock.api("GET", "/api/v1/whoami", user=None, headers={"Authorization": "Bearer " + token})
    assert r.status_code == 401
    assert "token" not in json.loads(airlock.logins["bob"].read_text())

    actions = [(a["action"], a["object"]["name"]) for a in airlock.audit() if a["object"]["kind"] == "User"]
    for expected in [("create-user", "bob"), ("set-roles", "bob"), ("set-password", "bob"),
                     ("set-disabled", "bob"), ("login", "bob"), ("logout", "bob")]:
        assert expected in actions, expected
    # No password, in any form, in the audit log.
    assert "a-new-password-1" not in json.dumps(airlock.audit())


def test_only_the_requester_may_retry(airlock, workspace, tmp_path):
    from conftest import datasource_yaml, make_source_db
    import time
    db = make_source_db(tmp_path / "s.db")
    (tmp_path / "ds.yaml").write_text(datasource_yaml("broken", db, tables=("nope",)))
    airlock.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", workspace, user="eng")
    deadline = time.time() + 30
    while time.time() < deadline and airlock.ds("broken")["status"].get("stage") != "Failed":
        time.sleep(0.1)
    airlock.add_user("eng-b", "data-engineer", workspaces=[workspace])
    r = airlock.api("POST", "/api/v1/datasources/broken/retry", user="eng-b")
    assert r.status_code == 403 and "requester" in r.json()["error"]["message"]
    assert airlock.ds("broken")["status"]["stage"] == "Failed"
