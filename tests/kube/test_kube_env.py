"""The test control plane works as a user would use it, and the CRDs in
deploy/crds/ accept and refuse, on the real API server, what the fixtures in
tests/fixtures/resources/ say.

Validity is checked with `kubectl apply --dry-run=server --validate=strict`
(field validation Strict: the server refuses unknown fields instead of pruning
them). The main resource ignores `status` (the CRDs have a status
subresource), so a fixture carrying a status is also checked the way a
controller writes status: the object is created without it, then
`kubectl replace --subresource=status --dry-run=server --validate=strict`.

KNOWN_ACCEPTED lists the invalid fixtures the real server does NOT refuse,
with why; they are strict xfails, so a change in either direction shows up.
"""
import copy
import json
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "resources"
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
SEED = [FIXTURES / "valid" / "seed-import-datasource.yaml",
        FIXTURES / "valid" / "seed-uploaded-datasource.yaml"]
STATUS_NS = "status-check"

# Invalid fixtures the API server (v1.35, with kubectl of the same version)
# accepts, and why. The airlock's C validator is stricter here on purpose.
KNOWN_ACCEPTED = {
    "description-null.yaml":
        "the API server drops a null value of a field that is not nullable: "
        "true before validating (structural schema defaulting/pruning), so "
        "`description: null` is stored as if absent",
    "status-exitcode-int32.yaml":
        "the API server does not enforce `format: int32` on integers: "
        "4294967296 is stored in status.job.exitCode",
    "yaml-alias.yaml":
        "anchors and aliases are legal YAML: kubectl (and the server's own "
        "YAML decoder) expand them",
    "yaml-duplicate-key.yaml":
        "kubectl converts YAML to JSON on the client and keeps the last "
        "duplicate key silently; the server itself refuses duplicate keys "
        "under Strict validation when it receives the YAML "
        "(test_server_refuses_duplicate_yaml_keys)",
}

SERVER_SET_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation",
                       "managedFields", "selfLink", "deletionTimestamp",
                       "deletionGracePeriodSeconds")


def _msg(proc):
    return (proc.stderr or proc.stdout).strip()


def _client_json(kube, path):
    """The object(s) as kubectl parses and would send them."""
    proc = kube.kubectl("create", "--dry-run=client", "-o", "json", "-f", str(path), check=False)
    if proc.returncode != 0:
        return None
    doc = json.loads(proc.stdout)
    return doc.get("items", [doc]) if doc.get("kind") == "List" else [doc]


_namespaces = set()


def _ensure_namespaces(kube, path):
    for obj in _client_json(kube, path) or []:
        ns = obj.get("metadata", {}).get("namespace")
        if ns and ns not in _namespaces:
            kube.kubectl("create", "namespace", ns, check=False)
            _namespaces.add(ns)


def _status_write(kube, obj):
    """Create obj (without status) in STATUS_NS, then try to write its status
    through the status subresource (server dry run). Returns the
    CompletedProcess of that write; the object is deleted again."""
    if STATUS_NS not in _namespaces:
        kube.kubectl("create", "namespace", STATUS_NS, check=False)
        _namespaces.add(STATUS_NS)
    status = obj["status"]
    body = copy.deepcopy(obj)
    body.pop("status")
    meta = body.setdefault("metadata", {})
    for key in SERVER_SET_METADATA:
        meta.pop(key, None)
    meta["namespace"] = STATUS_NS
    kube.kubectl("create", "-f", "-", input=json.dumps(body))
    try:
        current = json.loads(kube.kubectl("get", "-f", "-", "-o", "json", input=json.dumps(body)).stdout)
        if current.get("kind") == "List":     # `get -f` answers with a List
            (current,) = current["items"]
        current["status"] = status
        return kube.kubectl("replace", "--subresource=status", "--dry-run=server",
                            "--validate=strict", "-f", "-", input=json.dumps(current), check=False)
    finally:
        kube.kubectl("delete", "-f", "-", "--wait=false", input=json.dumps(body), check=False)


def test_versions(kube):
    out = kube.kubectl("version", "-o", "json").stdout
    versions = json.loads(out)
    assert versions["serverVersion"]["gitVersion"].startswith("v1.")
    assert versions["clientVersion"]["gitVersion"] == versions["serverVersion"]["gitVersion"]
    assert kube.helm("version", "--short").stdout.startswith("v3.")
    # helm reaches the API server with the admin kubeconfig
    assert kube.helm("list", "-A").returncode == 0


def test_apply_seed_datasources(kube):
    """The seed's two AnalyticsWorkspaceDataSource examples, applied for real."""
    ns = "seed"
    kube.kubectl("create", "namespace", ns)
    try:
        for path in SEED:
            out = kube.kubectl("apply", "-n", ns, "-f", str(path)).stdout
            assert "created" in out, out
        got = kube.kubectl_json("get", "analyticsworkspacedatasources", "-n", ns)
        by_name = {i["metadata"]["name"]: i for i in got["items"]}
        assert set(by_name) == {"example-data-source-1", "ds-782b4a1f07234229980f75f2f651412a"}
        assert by_name["example-data-source-1"]["spec"]["type"] == "Import"
        assert by_name["example-data-source-1"]["spec"]["connections"][0]["credentials"] == {
            "userKey": "DatabricksUsername", "passwordKey": "DatabricksPassword"}
        assert by_name["ds-782b4a1f07234229980f75f2f651412a"]["spec"]["type"] == "Uploaded"
        # the short name and printer columns work as a user types them
        table = kube.kubectl("get", "awds", "-n", ns).stdout
        assert "example-data-source-1" in table and "Import" in table
        # applying again changes nothing
        for path in SEED:
            assert "unchanged" in kube.kubectl("apply", "-n", ns, "-f", str(path)).stdout
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_fixture_accepted(kube, path):
    _ensure_namespaces(kube, path)
    proc = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", str(path), check=False)
    assert proc.returncode == 0, f"the API server refused valid fixture {path.name}:\n{_msg(proc)}"
    for obj in _client_json(kube, path):
        if "status" in obj:
            proc = _status_write(kube, obj)
            assert proc.returncode == 0, (
                f"the API server refused the status of valid fixture {path.name}:\n{_msg(proc)}")


def _invalid_params():
    for path in INVALID:
        marks = []
        if path.name in KNOWN_ACCEPTED:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_ACCEPTED[path.name]))
        yield pytest.param(path, marks=marks, id=path.name)


@pytest.mark.parametrize("path", list(_invalid_params()))
def test_invalid_fixture_refused(kube, path):
    proc = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", str(path), check=False)
    if proc.returncode != 0:
        return
    # Accepted by the main resource: the only remaining way to refuse it is
    # the status subresource (the main resource ignores status).
    objs = [o for o in _client_json(kube, path) or [] if "status" in o]
    assert objs, f"the API server accepted invalid fixture {path.name}: {_msg(proc)}"
    for obj in objs:
        sproc = _status_write(kube, obj)
        assert sproc.returncode != 0, (
            f"the API server accepted invalid fixture {path.name}, status included: {_msg(sproc)}")


def test_server_refuses_duplicate_yaml_keys(kube):
    """The server's own YAML decoder refuses duplicate keys under Strict
    validation; only kubectl's client-side YAML->JSON hides them."""
    body = (FIXTURES / "invalid" / "yaml-duplicate-key.yaml").read_bytes()
    status, answer = kube.api(
        "POST", "/apis/xlscsde.nhs.uk/v1/namespaces/default/analyticsworkspacedatasources"
        "?dryRun=All&fieldValidation=Strict", body, content_type="application/yaml")
    assert status == 400, answer
    assert b"already set in map" in answer


def test_operator_without_rbac_is_forbidden_then_allowed(kube):
    """RBAC is on, and a RoleBinding to the ServiceAccount applies to the
    operator's token identity."""
    proc = kube.kubectl("get", "analyticsworkspacedatasources", "-n", "airlock",
                        user="operator", check=False)
    assert proc.returncode != 0
    assert "Forbidden" in proc.stderr and "airlock-operator" in proc.stderr, proc.stderr
    status, _ = kube.api("GET", "/apis/xlscsde.nhs.uk/v1/namespaces/airlock/analyticsworkspacedatasources",
                         user="operator")
    assert status == 403

    kube.kubectl("create", "role", "awds-reader", "-n", "airlock", "--verb=get,list,watch",
                 "--resource=analyticsworkspacedatasources.xlscsde.nhs.uk")
    kube.kubectl("create", "rolebinding", "awds-reader", "-n", "airlock", "--role=awds-reader",
                 "--serviceaccount=airlock:airlock-operator")
    try:
        deadline = time.monotonic() + 10   # the RBAC authorizer's cache catches up quickly
        while True:
            status, _ = kube.api("GET", "/apis/xlscsde.nhs.uk/v1/namespaces/airlock/"
                                 "analyticsworkspacedatasources", user="operator")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200
        # still nothing elsewhere, and nothing for a person without roles
        assert kube.api("GET", "/apis/xlscsde.nhs.uk/v1/namespaces/default/"
                        "analyticsworkspacedatasources", user="operator")[0] == 403
        assert kube.api("GET", "/apis/xlscsde.nhs.uk/v1/namespaces/airlock/"
                        "analyticsworkspacedatasources", user="alice")[0] == 403
    finally:
        kube.kubectl("delete", "rolebinding,role", "awds-reader", "-n", "airlock", check=False)


def test_restart_apiserver_keeps_data(kube):
    kube.kubectl("create", "configmap", "survives-restart", "-n", "airlock", "--from-literal=a=b")
    port = kube.port
    kube.restart_apiserver()
    assert kube.port == port
    got = kube.kubectl_json("get", "configmap", "survives-restart", "-n", "airlock")
    assert got["data"] == {"a": "b"}
    kube.kubectl("delete", "configmap", "survives-restart", "-n", "airlock")


def test_compaction_forces_410_without_watch_cache(kube_bin):
    """compact_etcd() makes an old-resourceVersion watch fail with 410 Gone
    when watches go to etcd (watch_cache=False); see kubeenv.KubeEnv."""
    from kubeenv import KubeEnv
    with KubeEnv(kube_bin, watch_cache=False) as env:
        path = "/api/v1/namespaces/default/configmaps"
        status, body = env.api("GET", path)
        assert status == 200
        old_rv = json.loads(body)["metadata"]["resourceVersion"]
        for i in range(3):
            env.kubectl("create", "configmap", f"c{i}", "--from-literal=i=1")
        env.compact_etcd()
        status, body = env.api("GET", f"{path}?watch=1&resourceVersion={old_rv}&timeoutSeconds=5")
        assert status == 200
        event = json.loads(body.splitlines()[0])
        assert event["type"] == "ERROR" and event["object"]["code"] == 410, event
        status, _ = env.api("GET", f"{path}?resourceVersion={old_rv}&resourceVersionMatch=Exact")
        assert status == 410
