"""Keycloak bearer tokens on /api/v1, against a real Keycloak with the test
realm (deploy/keycloak/realm-airlock.json) and a real `airlock serve`
configured for it. One Keycloak serves the whole session (tests/e2e/keycloak.py);
one airlock serves this module.

What a person would check: every realm user's token is accepted and gives
the roles and workspaces the realm says (groups claim, plus an
AnalyticsWorkspaceBinding); tokens that are forged, expired, for another
client, unsigned, or HMAC-signed with the realm's public key are refused
with 401; a user outside a workspace's group cannot see its datasources;
local accounts keep working; a rotated realm key is picked up."""
import base64
import hashlib
import hmac
import json
import os
import time

import pytest
import requests

from conftest import Airlock, datasource_yaml, make_source_db
from keycloak import keycloak  # noqa: F401  (session fixture)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def split(token: str):
    h, p, s = token.split(".")
    return json.loads(unb64url(h)), json.loads(unb64url(p)), s


def join(header: dict, payload: dict, signature: str) -> str:
    return ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()), signature])


def hs256(header: dict, payload: dict, secret: bytes) -> str:
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def call(airlock, token, path="/api/v1/whoami", method="GET"):
    return requests.request(method, airlock.url + path, headers={"Authorization": "Bearer " + token},
                            timeout=30)


@pytest.fixture(scope="module")
def oidc_airlock(keycloak, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("oidc")
    secret = root / "client-secret"
    secret.write_text(keycloak.client_secret + "\n")
    os.chmod(secret, 0o600)
    config = (f"oidc:\n  issuer: {keycloak.issuer}\n  clientId: {keycloak.client_id}\n"
              f"  clientSecretFile: {secret}\n  leewaySeconds: 1\n")
    a = Airlock(root / "airlock", config).start()
    try:
        a.login("admin")
        for ws in ("gm-research", "nw-cancer"):
            a.cli("workspace", "create", ws)
        # bob's membership of gm-research comes from a binding, not a group.
        a.cli("workspace", "add-member", "gm-research", "bob")
        db = make_source_db(root / "s.db")
        (root / "ds.yaml").write_text(datasource_yaml("nw-cancer-data", db))
        a.cli("apply", "-f", root / "ds.yaml", "--workspace", "nw-cancer")
        yield a
    finally:
        a.stop()


EXPECTED = {
    # user: (roles in airlock's order, workspaces)
    "rita": (["researcher"], {"gm-research"}),
    "eddie": (["data-engineer"], {"gm-research", "nw-cancer"}),
    "alice": (["approver"], {"nw-cancer"}),
    "bob": (["approver"], {"gm-research"}),           # from the AnalyticsWorkspaceBinding
    "olga": (["admin"], set()),                       # a client role of "airlock" only
}


def test_realm_matches_expectations(keycloak):  # noqa: F811
    """The table above is what the realm file says (plus bob's binding)."""
    users = keycloak.users
    assert set(users) == set(EXPECTED)
    for name, (roles, workspaces) in EXPECTED.items():
        assert users[name]["roles"] == set(roles), name
        assert users[name]["workspaces"] == (workspaces - {"gm-research"} if name == "bob" else workspaces)
    print(f"Keycloak {keycloak.version} started in {keycloak.start_seconds:.1f} s")


@pytest.mark.parametrize("user", sorted(EXPECTED))
def test_each_user_is_accepted(oidc_airlock, keycloak, user):  # noqa: F811
    r = call(oidc_airlock, keycloak.access_token(user))
    assert r.status_code == 200, r.text
    me = r.json()
    roles, workspaces = EXPECTED[user]
    assert me["username"] == user
    assert me["roles"] == roles
    assert set(me["workspaces"]) == workspaces
    assert len(me["workspaces"]) == len(set(me["workspaces"]))


def test_roles_authorise_like_local_users(oidc_airlock, keycloak):  # noqa: F811
    assert call(oidc_airlock, keycloak.access_token("rita"), "/api/v1/users").status_code == 403
    r = call(oidc_airlock, keycloak.access_token("olga"), "/api/v1/users")
    assert r.status_code == 200, r.text
    assert "admin" in [u["username"] for u in r.json()["items"]]
    # Local accounts work alongside.
    r = oidc_airlock.api("GET", "/api/v1/whoami")
    assert r.status_code == 200 and r.json()["username"] == "admin"


def test_workspace_isolation(oidc_airlock, keycloak):  # noqa: F811
    path = "/api/v1/datasources/nw-cancer-data"
    rita = keycloak.access_token("rita")
    r = call(oidc_airlock, rita, path)
    assert r.status_code == 404, r.text
    assert "nw-cancer-data" not in [d["metadata"]["name"] for d in
                                    call(oidc_airlock, rita, "/api/v1/datasources").json()["items"]]
    assert call(oidc_airlock, rita, "/api/v1/workspaces/nw-cancer").status_code == 404
    for member in ("eddie", "alice"):  # by the groups claim
        r = call(oidc_airlock, keycloak.access_token(member), path)
        assert r.status_code == 200, (member, r.text)
        assert r.json()["metadata"]["labels"]["xlscsde.nhs.uk/workspace"] == "nw-cancer"
    # rita may not create a datasource in a workspace she is not in, but may in hers.
    body = json.loads(json.dumps(oidc_airlock.ds("nw-cancer-data")))
    for key in ("status",):
        body.pop(key, None)
    body["metadata"] = {"name": "rita-ds"}
    r = requests.post(oidc_airlock.url + "/api/v1/datasources?workspace=nw-cancer", json=body, timeout=30,
                      headers={"Authorization": "Bearer " + rita})
    assert r.status_code == 404, r.text


def refused(airlock, token, *words):
    r = call(airlock, token)
    assert r.status_code == 401, r.text
    message = r.json()["error"]["message"]
    for w in words:
        assert w in message, message
    # The answer never repeats the token.
    assert token not in r.text and token.split(".")[1] not in r.text
    return message


def test_forged_tokens_refused(oidc_airlock, keycloak):  # noqa: F811
    good = keycloak.access_token("rita")
    header, payload, sig = split(good)
    # rita makes herself olga, an admin, keeping Keycloak's signature.
    forged = dict(payload, preferred_username="olga", realm_access={"roles": ["admin"]})
    refused(oidc_airlock, join(header, forged, sig), "signature")
    # A signature with one character changed.
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    refused(oidc_airlock, join(header, payload, flipped))
    # Another token's signature.
    _, _, other_sig = split(keycloak.access_token("eddie"))
    refused(oidc_airlock, join(header, payload, other_sig), "signature")
    # The good token itself is fine.
    assert call(oidc_airlock, good).status_code == 200


def test_alg_none_refused(oidc_airlock, keycloak):  # noqa: F811
    header, payload, sig = split(keycloak.access_token("rita"))
    for alg in ("none", "None", "NONE"):
        none = dict(header, alg=alg)
        refused(oidc_airlock, join(none, payload, ""))
        refused(oidc_airlock, join(none, payload, sig), "alg none")


def test_hs256_with_public_key_refused(oidc_airlock, keycloak):  # noqa: F811
    header, payload, _ = split(keycloak.access_token("rita"))
    der_b64 = requests.get(keycloak.issuer, timeout=30).json()["public_key"]
    der = base64.b64decode(der_b64)
    lines = [der_b64[i:i + 64] for i in range(0, len(der_b64), 64)]
    pem = "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"
    jwk = requests.get(keycloak.jwks_uri, timeout=30).json()["keys"][0]
    secrets_tried = [pem.encode(), pem.rstrip("\n").encode(), der, der_b64.encode(),
                     json.dumps(jwk).encode(), unb64url(jwk["n"])]
    for alg in ("HS256", "HS384", "HS512"):
        for secret in secrets_tried:
            h = dict(header, alg=alg)
            if alg == "HS256":
                token = hs256(h, payload, secret)
            else:
                digest = hashlib.sha384 if alg == "HS384" else hashlib.sha512
                signing_input = b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(payload).encode())
                token = signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), digest).digest())
            refused(oidc_airlock, token, "shared secret")


def test_wrong_audience_refused(oidc_airlock, keycloak):  # noqa: F811
    # other-app's tokens are not for airlock: aud lacks it and azp is other-app.
    token = keycloak.access_token("rita", client="other-app")
    _, payload, _ = split(token)
    assert payload["azp"] == "other-app" and "airlock" not in (payload.get("aud") or [])
    refused(oidc_airlock, token, "not meant for airlock")
    # An ID token is for the client that asked (aud airlock-cli) and typ ID.
    id_token = keycloak.token("rita")["id_token"]
    refused(oidc_airlock, id_token)


def test_expired_token_refused(oidc_airlock, keycloak):  # noqa: F811
    # airlock-cli-short's access tokens live 2 s; airlock allows 1 s of skew.
    token = keycloak.access_token("rita", client="airlock-cli-short")
    _, payload, _ = split(token)
    assert payload["exp"] - payload["iat"] == 2
    assert call(oidc_airlock, token).status_code == 200
    time.sleep(max(0.0, payload["exp"] + 1 - time.time()) + 1.2)
    refused(oidc_airlock, token, "expired")


def test_rotated_key_is_fetched(oidc_airlock, keycloak):  # noqa: F811
    """Keycloak gets a new, preferred signing key: tokens with its kid make
    airlock fetch the JWKS again (at most every 10 s) and are accepted."""
    before_kid = split(keycloak.access_token("rita"))[0]["kid"]
    realm_id = keycloak.admin("GET", "").json()["id"]
    r = keycloak.admin("POST", "/components", json={
        "name": "rotated-for-test", "providerId": "rsa-generated",
        "providerType": "org.keycloak.keys.KeyProvider", "parentId": realm_id,
        "config": {"priority": ["500"], "keySize": ["2048"], "active": ["true"], "enabled": ["true"],
                   "algorithm": ["RS256"]}})
    assert r.status_code == 201, r.text
    component = r.headers["Location"].rsplit("/", 1)[1]
    try:
        token = keycloak.access_token("rita")
        new_kid = split(token)[0]["kid"]
        assert new_kid != before_kid
        assert new_kid in [k["kid"] for k in requests.get(keycloak.jwks_uri, timeout=30).json()["keys"]]
        deadline = time.time() + 25
        while True:
            r = call(oidc_airlock, token)
            if r.status_code == 200 or time.time() > deadline:
                break
            time.sleep(1)
        assert r.status_code == 200, r.text
        assert r.json()["username"] == "rita"
        assert "fetched" in oidc_airlock.log.read_text()
    finally:
        keycloak.admin("DELETE", f"/components/{component}")


def test_provider_down_is_503_and_local_accounts_work(airlock_factory, tmp_path, keycloak):  # noqa: F811
    """A Keycloak that cannot be reached does not stop airlock: its tokens get
    503 (try again), local tokens still work."""
    from pgserver import free_port
    port = free_port()
    a = airlock_factory(f"oidc:\n  issuer: http://127.0.0.1:{port}/realms/airlock\n  clientId: airlock\n")
    r = call(a, keycloak.access_token("rita"))
    assert r.status_code == 503, r.text
    assert "identity provider" in r.json()["error"]["message"]
    a.login("admin")
    assert a.api("GET", "/api/v1/whoami").status_code == 200
