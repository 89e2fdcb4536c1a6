"""The Helm chart deploy/helm/airlock: lint, render, a server-side dry run
against the real API server, the CRD copies, every value documented, and the
operator's RBAC held to least privilege (rendered, and as the API server's
authorizer answers for the chart's ServiceAccount).

Needs the `kube` fixture from tests/kube/conftest.py (a started
tests/kube/kubeenv.KubeEnv with the CRDs applied, or not: the dry run brings
the chart's own) for the tests that talk to the API server; the others only
need helm. helm comes from scripts/kube-tools.sh (its last stdout line is the
bin dir) or $AIRLOCK_KUBE_BIN.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "airlock"
CRDS = REPO / "deploy" / "crds"
KUBE_TOOLS = REPO / "scripts" / "kube-tools.sh"

# Value sets every render test runs with. "default" and "clusterWide" are the
# two the issue names; the others cover the remaining template branches.
VALUE_SETS = {
    "default": [],
    "clusterWide": ["--set", "clusterWide=true"],
    "watchNamespace": ["--set", "watchNamespace=airlock-crs"],
    "frontend": ["--set", "frontend.enabled=true"],
    "frontend-clusterWide": ["--set", "frontend.enabled=true,clusterWide=true"],
    "frontend-watchNamespace": ["--set", "frontend.enabled=true,watchNamespace=airlock-crs"],
    "frontend-oidc": ["--set", "frontend.enabled=true,frontend.oidc.issuer=https://kc.example.org/realms/sde,"
                      "frontend.oidc.clientSecret.secretName=kc-airlock,frontend.persistence.enabled=false,"
                      "frontend.ingress.tls[0].secretName=airlock-tls,"
                      "frontend.ingress.tls[0].hosts[0]=airlock.example.org"],
    "one-replica": ["--set", "operator.replicas=1"],
    "tuned": ["--set", "operator.workers=8,runner.default=dlt,storage.workspaceAccessMode=ReadWriteMany,"
              "workloads.runAsUser=1000,workloads.runAsGroup=1000,workloads.fsGroup=1000"],
}

# The operator's rules, exactly as docs/helm.md lists them:
# (apiGroup, resource) -> (verbs, resourceNames or None).
CR_RULES = {
    ("xlscsde.nhs.uk", "analyticsworkspacedatasources"): {"get", "list", "watch", "update", "patch"},
    ("xlscsde.nhs.uk", "analyticsworkspacedatasources/status"): {"get", "update", "patch"},
    ("xlscsde.nhs.uk", "analyticsworkspacedatasources/finalizers"): {"update"},
    ("xlscsde.nhs.uk", "analyticsworkspacedatabindings"):
        {"get", "list", "watch", "create", "update", "patch", "delete"},
    ("xlscsde.nhs.uk", "analyticsworkspaces"): {"get", "list", "watch"},
    ("xlscsde.nhs.uk", "analyticsworkspacebindings"): {"get", "list", "watch"},
}
EVENT_RULES = {
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
ALL_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
WORKLOAD_RULES = {
    ("", "persistentvolumeclaims"): ALL_VERBS,
    ("", "secrets"): ALL_VERBS,
    ("", "services"): ALL_VERBS,
    ("batch", "jobs"): {"get", "list", "watch", "create", "delete"},
    ("batch", "jobs/status"): {"get"},
    ("apps", "deployments"): ALL_VERBS,
    ("networking.k8s.io", "ingresses"): ALL_VERBS,
    ("", "pods"): {"get", "list"},
    ("", "pods/log"): {"get"},
    # The audit log (docs/kube-store.md): append-only, so no update/patch/delete.
    ("xlscsde.nhs.uk", "airlockauditrecords"): {"get", "list", "create"},
}
LEASE = "airlock-operator"

# The frontend's rules (docs/helm.md, "RBAC: what the frontend may do"): exactly
# the calls it makes, no watch.
FRONTEND_CR_RULES = {
    ("xlscsde.nhs.uk", "analyticsworkspacedatasources"): {"get", "list", "create", "update", "delete"},
    ("xlscsde.nhs.uk", "analyticsworkspacedatasources/status"): {"update", "patch"},
    ("xlscsde.nhs.uk", "analyticsworkspacedatabindings"): {"get", "list", "create", "update", "delete"},
    ("xlscsde.nhs.uk", "analyticsworkspaces"): {"get", "list"},
    ("xlscsde.nhs.uk", "analyticsworkspacebindings"): {"get", "list"},
}
FRONTEND_WORKLOAD_RULES = {
    ("apps", "deployments"): {"get", "patch"},
    ("xlscsde.nhs.uk", "airlockauditrecords"): {"get", "list", "create"},
}

# Never granted to the operator, in any mode.
FORBIDDEN_RESOURCES = {
    "nodes", "namespaces", "clusterroles", "clusterrolebindings", "roles", "rolebindings",
    "customresourcedefinitions", "serviceaccounts", "serviceaccounts/token", "pods/exec",
    "pods/attach", "pods/portforward", "persistentvolumes", "configmaps",
    "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
    "certificatesigningrequests", "tokenreviews", "subjectaccessreviews",
}
FORBIDDEN_VERBS = {"*", "escalate", "bind", "impersonate", "deletecollection", "approve", "sign"}


# ---- helpers -------------------------------------------------------------------

def _bin_dir() -> Path:
    override = os.environ.get("AIRLOCK_KUBE_BIN")
    if override:
        return Path(override)
    proc = subprocess.run(["bash", str(KUBE_TOOLS)], stdout=subprocess.PIPE, text=True,
                          timeout=3600)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, f"{KUBE_TOOLS} failed (exit {proc.returncode})"
    return Path(lines[-1])


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    helm = _bin_dir() / "helm"
    assert os.access(helm, os.X_OK), f"{helm} missing: run scripts/kube-tools.sh"
    return helm


def helm(helm_bin: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # No kube context: lint and template never reach a cluster. Private helm
    # home directories so the test never reads or writes the user's.
    home = Path(os.environ.get("TMPDIR", "/tmp")) / "airlock-helm-test-home"
    env = dict(os.environ, HELM_CACHE_HOME=str(home / "cache"),
               HELM_CONFIG_HOME=str(home / "config"), HELM_DATA_HOME=str(home / "data"))
    env.pop("KUBECONFIG", None)
    proc = subprocess.run([str(helm_bin), *args], capture_output=True, text=True, timeout=120,
                          env=env)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc


def render(helm_bin: Path, *args: str, namespace: str = "jupyterhub",
           release: str = "airlock", include_crds: bool = False) -> str:
    extra = ["--include-crds"] if include_crds else []
    return helm(helm_bin, "template", release, str(CHART), "--namespace", namespace,
                *extra, *args).stdout


def docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def rules_table(role: dict) -> dict:
    """{(group, resource): (set of verbs, tuple of resourceNames)} - a rule
    naming several groups or resources is expanded; one key may appear in
    two rules only with different resourceNames."""
    out: dict = {}
    for rule in role.get("rules") or []:
        names = tuple(rule.get("resourceNames") or ())
        for group in rule.get("apiGroups") or []:
            for res in rule.get("resources") or []:
                key = (group, res, names)
                assert key not in out, f"{role['metadata']['name']}: {key} granted twice"
                out[key] = set(rule["verbs"])
    return out


def expected(with_crs: bool, with_workloads: bool) -> dict:
    want = {}
    if with_crs:
        want.update({(g, r, ()): v for (g, r), v in CR_RULES.items()})
    want.update({(g, r, ()): v for (g, r), v in EVENT_RULES.items()})
    if with_workloads:
        want.update({(g, r, ()): v for (g, r), v in WORKLOAD_RULES.items()})
        want[("coordination.k8s.io", "leases", (LEASE,))] = {"get", "update"}
        want[("coordination.k8s.io", "leases", ())] = {"create"}
    return want


def operator_rbac(objs: list[dict], component: str = "operator") -> list[dict]:
    return [o for o in objs
            if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
            and o["metadata"]["labels"].get("app.kubernetes.io/component") == component]


def frontend_expected(with_crs: bool, with_workloads: bool) -> dict:
    want = {}
    if with_crs:
        want.update({(g, r, ()): v for (g, r), v in FRONTEND_CR_RULES.items()})
    if with_workloads:
        want.update({(g, r, ()): v for (g, r), v in FRONTEND_WORKLOAD_RULES.items()})
    return want


# ---- no API server needed ------------------------------------------------------------

def test_chart_crds_are_byte_identical_to_deploy_crds():
    chart_crds = CHART / "crds"
    src = sorted(p.name for p in CRDS.glob("*.yaml"))
    dst = sorted(p.name for p in chart_crds.glob("*.yaml"))
    assert src, f"no CRDs in {CRDS}"
    assert dst == src, (f"{chart_crds} holds {dst}, {CRDS} holds {src}: "
                        "run scripts/sync-chart-crds.sh")
    for name in src:
        assert not (chart_crds / name).is_symlink(), f"{chart_crds / name} must be a copy, not a symlink"
        assert (chart_crds / name).read_bytes() == (CRDS / name).read_bytes(), \
            f"{chart_crds / name} differs from {CRDS / name}: run scripts/sync-chart-crds.sh"


def _values_doc() -> list[tuple[str, bool]]:
    """Walk values.yaml by lines: (dotted key path, has a "# --" comment) for
    every key not inside a documented key's value."""
    out = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    covered_below: int | None = None  # indent of a documented key whose subtree is covered
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_.-]+):(\s.*)?$", line)
        if covered_below is not None and indent > covered_below:
            comment = []
            continue
        covered_below = None
        if not m or stripped.startswith("- "):
            comment = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [m.group(2)])
        documented = any(c.startswith("# --") for c in comment)
        out.append((path, documented))
        if documented:
            covered_below = indent
        stack.append((indent, m.group(2)))
        comment = []
    return out


def test_every_value_is_documented_in_values_and_readme():
    entries = _values_doc()
    assert len(entries) > 50
    paths = {p for p, _ in entries}
    undocumented = []
    for path, documented in entries:
        is_section = any(q.startswith(path + ".") for q in paths)
        if not documented and not is_section:
            undocumented.append(path)
    assert not undocumented, f"values.yaml keys without a '# --' comment: {undocumented}"
    readme = (CHART / "README.md").read_text()
    missing = [p for p, documented in entries if documented and f"| `{p}` |" not in readme]
    assert not missing, f"{CHART / 'README.md'} does not list: {missing}"


def test_helm_lint(helm_bin):
    out = helm(helm_bin, "lint", str(CHART))
    assert "0 chart(s) failed" in out.stdout
    for name, args in VALUE_SETS.items():
        out = helm(helm_bin, "lint", "--strict", str(CHART), *args, check=False)
        assert out.returncode == 0, f"helm lint --strict ({name}):\n{out.stdout}\n{out.stderr}"


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_template_renders(helm_bin, name):
    objs = docs(render(helm_bin, *VALUE_SETS[name]))
    kinds = {o["kind"] for o in objs}
    assert {"ServiceAccount", "Deployment", "Service"} <= kinds
    dep = next(o for o in objs if o["kind"] == "Deployment"
               and o["metadata"]["name"].endswith("-operator"))
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "airlock:0.1.0"
    assert c["args"][:5] == ["operator", "--namespace", "jupyterhub", "--metrics-listen", "0.0.0.0:9090"]
    assert "--leader-election" in c["args"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["AIRLOCK_STORAGE_CLASS"] == "jupyter-default"
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert len(pdbs) == (0 if name == "one-replica" else 1)
    svc = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"].endswith("-metrics"))
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics",
                                     "protocol": "TCP"}]
    assert not any(o["kind"] == "ServiceMonitor" for o in objs)
    assert any(o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-frontend")
               for o in objs) == name.startswith("frontend")


def _operator_env(objs: list[dict]) -> dict[str, str | None]:
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-operator"))
    return {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def _runtime_env_vars() -> set[str]:
    """Every AIRLOCK_* variable runtime_kube_options_from_env() reads (from the
    source, so a variable added there and not to the chart fails here)."""
    src = (REPO / "src" / "runtime" / "runtime_kube.c").read_text()
    start = src.index("int runtime_kube_options_from_env(")
    body = src[start:src.index("\n}\n", start)]
    names = set(re.findall(r'"(AIRLOCK_[A-Z_]+)"', body))
    assert len(names) > 20, names
    return names


def test_every_runtime_setting_comes_from_a_chart_value(helm_bin):
    env = _operator_env(docs(render(helm_bin)))
    # AIRLOCK_NAMESPACE: the operator gets --namespace (and AIRLOCK_LEASE_NAMESPACE) instead.
    missing = sorted(_runtime_env_vars() - {"AIRLOCK_NAMESPACE"} - set(env))
    assert not missing, f"runtime_kube_options_from_env reads {missing}, which the chart never sets"
    readme = (CHART / "README.md").read_text()
    undocumented = [v for v in env if v.startswith("AIRLOCK_") and f"`{v}`" not in readme]
    assert not undocumented, f"the chart README's 'What the operator receives' lacks {undocumented}"


def test_new_operator_values_render(helm_bin):
    env = _operator_env(docs(render(helm_bin)))
    assert env["AIRLOCK_WORKERS"] == "4"
    assert env["AIRLOCK_DEFAULT_RUNNER"] == "native"
    assert env["AIRLOCK_WORKSPACE_STORAGE_CLASS"] == "jupyter-default"
    assert env["AIRLOCK_WORKSPACE_VOLUME_SIZE"] == "10Gi"
    assert env["AIRLOCK_WORKSPACE_VOLUME_ACCESS_MODE"] == ""      # = AIRLOCK_VOLUME_ACCESS_MODE
    assert (env["AIRLOCK_RUN_AS_USER"], env["AIRLOCK_RUN_AS_GROUP"], env["AIRLOCK_FS_GROUP"]) == \
        ("65532", "65532", "65532")
    env = _operator_env(docs(render(
        helm_bin, "--set", "operator.workers=12,runner.default=dlt,storage.workspaceStorageClass=ws-class,"
        "storage.workspaceSize=50Gi,storage.workspaceAccessMode=ReadWriteMany,workloads.runAsUser=1000,"
        "workloads.runAsGroup=2000,workloads.fsGroup=3000")))
    assert env["AIRLOCK_WORKERS"] == "12"
    assert env["AIRLOCK_DEFAULT_RUNNER"] == "dlt"
    assert env["AIRLOCK_WORKSPACE_STORAGE_CLASS"] == "ws-class"
    assert env["AIRLOCK_WORKSPACE_VOLUME_SIZE"] == "50Gi"
    assert env["AIRLOCK_WORKSPACE_VOLUME_ACCESS_MODE"] == "ReadWriteMany"
    assert (env["AIRLOCK_RUN_AS_USER"], env["AIRLOCK_RUN_AS_GROUP"], env["AIRLOCK_FS_GROUP"]) == \
        ("1000", "2000", "3000")


@pytest.mark.parametrize("setting,needle", [
    ("operator.workers=0", "operator.workers"),
    ("operator.workers=65", "operator.workers"),
    ("runner.default=python", "runner.default"),
    ("workloads.runAsUser=0", "workloads.runAsUser"),
    ("workloads.fsGroup=0", "workloads.runAsUser, runAsGroup and fsGroup"),
    ("uploader.idleScaleDownSeconds=0", "uploader.idleScaleDownSeconds"),
    ("uploader.idleScaleDownSeconds=2592001", "uploader.idleScaleDownSeconds"),
])
def test_bad_new_values_are_refused(helm_bin, setting, needle):
    out = helm(helm_bin, "template", "airlock", str(CHART), "--set", setting, check=False)
    assert out.returncode != 0 and needle in out.stderr, out.stderr


def _secret_value(secret: dict) -> str:
    import base64
    return base64.b64decode(secret["data"]["secret"]).decode()


def test_uploader_proxy_secret_frontend_service_and_network_policy(helm_bin):
    objs = docs(render(helm_bin, *VALUE_SETS["frontend"]))
    env = _operator_env(objs)
    # The operator gets the Secret's name (never its value) and the frontend's Service.
    assert env["AIRLOCK_UPLOADER_PROXY_SECRET"] == "airlock-uploader-proxy"
    assert env["AIRLOCK_UPLOADER_PROXY_SECRET_KEY"] == "secret"
    assert env["AIRLOCK_FRONTEND_SERVICE"] == "airlock-frontend"
    assert env["AIRLOCK_FRONTEND_SERVICE_PORT"] == "80"
    assert env["AIRLOCK_UPLOADER_IDLE_SECONDS"] == "900"
    [secret] = [o for o in objs if o["kind"] == "Secret"]
    assert secret["metadata"] == {**secret["metadata"], "name": "airlock-uploader-proxy", "namespace": "jupyterhub"}
    value = _secret_value(secret)
    assert len(value) == 48 and value.isalnum()
    assert value not in yaml.safe_dump_all([o for o in objs if o["kind"] != "Secret"])
    fe_svc = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == "airlock-frontend")
    assert fe_svc["spec"]["ports"][0]["port"] == 80
    fe = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "airlock-frontend")
    pod = fe["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert {e["name"]: e.get("value") for e in c["env"]}["AIRLOCK_UPLOADER_PROXY_SECRET_FILE"] == \
        "/var/run/airlock/proxy-secret/secret"
    assert {"name": "proxy-secret", "mountPath": "/var/run/airlock/proxy-secret", "readOnly": True} in c["volumeMounts"]
    assert next(v for v in pod["volumes"] if v["name"] == "proxy-secret")["secret"]["secretName"] == \
        "airlock-uploader-proxy"
    # Only the frontend's pods may connect to uploader pods.
    [np] = [o for o in objs if o["kind"] == "NetworkPolicy"]
    assert np["metadata"]["namespace"] == "jupyterhub"
    assert np["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "airlock-uploader",
                                                         "app.kubernetes.io/managed-by": "airlock"}}
    [rule] = np["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "jupyterhub"}},
                             "podSelector": {"matchLabels": fe["spec"]["selector"]["matchLabels"]}}]

    # Without the frontend nothing may connect; the Secret is still made (uploaders need it to start).
    objs = docs(render(helm_bin))
    [np] = [o for o in objs if o["kind"] == "NetworkPolicy"]
    assert np["spec"]["ingress"] == []
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "Secret"] == ["airlock-uploader-proxy"]

    # The frontend in the release's namespace: a copy of the same value there for it to mount.
    objs = docs(render(helm_bin, "--set", "frontend.enabled=true", namespace="airlock-system"))
    secrets = [o for o in objs if o["kind"] == "Secret"]
    assert sorted(o["metadata"]["namespace"] for o in secrets) == ["airlock-system", "jupyterhub"]
    assert len({_secret_value(o) for o in secrets}) == 1

    # A Secret of your own: named, not created, and nothing else changes.
    objs = docs(render(helm_bin, "--set", "uploader.proxySecret.name=my-proxy,uploader.proxySecret.create=false,"
                       "uploader.networkPolicy.enabled=false,frontend.enabled=true,frontend.service.port=8081,"
                       "uploader.idleScaleDownSeconds=60"))
    assert not any(o["kind"] in ("Secret", "NetworkPolicy") for o in objs)
    env = _operator_env(objs)
    assert env["AIRLOCK_UPLOADER_PROXY_SECRET"] == "my-proxy"
    assert env["AIRLOCK_FRONTEND_SERVICE_PORT"] == "8081"
    assert env["AIRLOCK_UPLOADER_IDLE_SECONDS"] == "60"


def test_service_monitor_is_optional(helm_bin):
    objs = docs(render(helm_bin, "--set", "serviceMonitor.enabled=true"))
    sm = [o for o in objs if o["kind"] == "ServiceMonitor"]
    assert len(sm) == 1 and sm[0]["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm[0]["spec"]["endpoints"][0]["port"] == "metrics"


def test_bad_leader_election_timing_is_refused(helm_bin):
    out = helm(helm_bin, "template", "airlock", str(CHART), "--set",
               "operator.leaderElection.renewDeadlineSeconds=20", check=False)
    assert out.returncode != 0 and "renewDeadlineSeconds" in out.stderr


@pytest.mark.parametrize("name", ["default", "watchNamespace", "frontend", "frontend-watchNamespace"])
def test_rendered_roles_are_least_privilege(helm_bin, name):
    objs = docs(render(helm_bin, *VALUE_SETS[name]))
    assert not any(o["kind"] in ("ClusterRole", "ClusterRoleBinding") for o in objs), \
        "no cluster-scoped RBAC without clusterWide"
    separate = name.endswith("watchNamespace")
    allowed_ns = {"jupyterhub"} | ({"airlock-crs"} if separate else set())
    roles = [o for o in objs if o["kind"] == "Role"]
    assert roles
    for role in roles:
        ns = role["metadata"]["namespace"]
        assert ns in allowed_ns, f"Role {role['metadata']['name']} in namespace {ns}"
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] \
                and "*" not in rule["apiGroups"], f"wildcard in {role['metadata']['name']}: {rule}"
            assert not FORBIDDEN_VERBS & set(rule["verbs"]), rule
            assert not FORBIDDEN_RESOURCES & set(rule["resources"]), rule
            assert "nonResourceURLs" not in rule
    for rb in (o for o in objs if o["kind"] == "RoleBinding"):
        assert rb["roleRef"]["kind"] == "Role"
        assert rb["metadata"]["namespace"] in allowed_ns
    # The operator's Roles grant exactly the documented rules.
    ops = {o["metadata"]["namespace"]: rules_table(o) for o in operator_rbac(objs) if o["kind"] == "Role"}
    if separate:
        assert ops == {"jupyterhub": expected(with_crs=False, with_workloads=True),
                       "airlock-crs": expected(with_crs=True, with_workloads=False)}
    else:
        assert ops == {"jupyterhub": expected(with_crs=True, with_workloads=True)}
    # The frontend's Roles grant exactly its documented rules (none without it).
    fes = {o["metadata"]["namespace"]: rules_table(o) for o in operator_rbac(objs, "frontend") if o["kind"] == "Role"}
    if not name.startswith("frontend"):
        assert fes == {}
    elif separate:
        assert fes == {"jupyterhub": frontend_expected(with_crs=False, with_workloads=True),
                       "airlock-crs": frontend_expected(with_crs=True, with_workloads=False)}
    else:
        assert fes == {"jupyterhub": frontend_expected(with_crs=True, with_workloads=True)}


def test_cluster_wide_has_the_same_rules(helm_bin):
    objs = docs(render(helm_bin, *VALUE_SETS["clusterWide"]))
    rbac = operator_rbac(objs)
    assert sorted(o["kind"] for o in rbac) == ["ClusterRole", "ClusterRoleBinding"]
    cr = next(o for o in rbac if o["kind"] == "ClusterRole")
    assert rules_table(cr) == expected(with_crs=True, with_workloads=True)
    fe = operator_rbac(docs(render(helm_bin, *VALUE_SETS["frontend-clusterWide"])), "frontend")
    assert sorted(o["kind"] for o in fe) == ["ClusterRole", "ClusterRoleBinding"]
    assert rules_table(next(o for o in fe if o["kind"] == "ClusterRole")) == \
        frontend_expected(with_crs=True, with_workloads=True)
    env = {e["name"]: e.get("value") for e in next(
        o for o in objs if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AIRLOCK_WATCH_NAMESPACE"] == "", "clusterWide without watchNamespace watches every namespace"


# ---- against the real API server -------------------------------------------------------------

def _ensure_namespace(kube, ns: str):
    proc = kube.kubectl("create", "namespace", ns, check=False)
    assert proc.returncode == 0 or "AlreadyExists" in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", ["default", "clusterWide", "watchNamespace", "frontend", "frontend-oidc",
                                  "frontend-clusterWide", "frontend-watchNamespace"])
def test_dry_run_server(kube, helm_bin, name):
    """`helm template | kubectl apply --dry-run=server -f -`: the API server
    validates every object (CRDs included) against its schemas and admission."""
    for ns in ("jupyterhub", "airlock-system", "airlock-crs"):
        _ensure_namespace(kube, ns)
    manifest = render(helm_bin, *VALUE_SETS[name], namespace="airlock-system", include_crds=True)
    proc = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert proc.returncode == 0, f"dry run ({name}) refused:\n{proc.stderr}\n{proc.stdout}"
    out = proc.stdout
    assert "deployment.apps/airlock-operator" in out and "(server dry run)" in out
    assert "customresourcedefinition.apiextensions.k8s.io/analyticsworkspacedatasources.xlscsde.nhs.uk" in out


def test_service_account_permissions_as_the_api_server_decides(kube, helm_bin):
    """Apply the chart's ServiceAccount and RBAC for real (in fresh namespaces)
    and ask the authorizer, impersonating the ServiceAccount, what it may do."""
    suffix = uuid.uuid4().hex[:6]
    work, crs, home = f"helm-work-{suffix}", f"helm-crs-{suffix}", f"helm-op-{suffix}"
    for ns in (work, crs, home):
        _ensure_namespace(kube, ns)
    manifest = render(helm_bin, "--set", f"namespace={work},watchNamespace={crs}",
                      namespace=home, release=f"t{suffix}")
    rbac = [o for o in docs(manifest) if o["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    sa = next(o for o in rbac if o["kind"] == "ServiceAccount")["metadata"]["name"]
    who = f"system:serviceaccount:{home}:{sa}"

    def can(verb: str, resource: str, ns: str | None, extra: tuple[str, ...] = ()) -> bool:
        args = ["auth", "can-i", verb, resource, f"--as={who}",
                f"--as-group=system:serviceaccounts", f"--as-group=system:serviceaccounts:{home}",
                *extra]
        args += ["-n", ns] if ns else []
        proc = kube.kubectl(*args, check=False)
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stderr}"
        return answer == "yes"

    allowed = [
        ("watch", "analyticsworkspacedatasources.xlscsde.nhs.uk", crs),
        ("patch", "analyticsworkspacedatasources.xlscsde.nhs.uk", crs, ("--subresource=status",)),
        ("update", "analyticsworkspacedatasources.xlscsde.nhs.uk", crs, ("--subresource=finalizers",)),
        ("create", "analyticsworkspacedatabindings.xlscsde.nhs.uk", crs),
        ("list", "analyticsworkspacebindings.xlscsde.nhs.uk", crs),
        ("create", "events", crs),
        ("create", "events.events.k8s.io", crs),
        ("create", "persistentvolumeclaims", work),
        ("delete", "secrets", work),
        ("create", "jobs.batch", work),
        ("get", "jobs.batch", work, ("--subresource=status",)),
        ("create", "deployments.apps", work),
        ("watch", "deployments.apps", work),       # uploader Deployments wake their datasource
        ("patch", "deployments.apps", work),       # idle scale-down and the scaled-up-at stamp
        ("create", "ingresses.networking.k8s.io", work),
        ("create", "services", work),
        ("get", "pods", work, ("--subresource=log",)),
        ("get", f"leases.coordination.k8s.io/{LEASE}", work),
        ("update", f"leases.coordination.k8s.io/{LEASE}", work),
        ("create", "leases.coordination.k8s.io", work),
        ("create", "airlockauditrecords.xlscsde.nhs.uk", work),
        ("get", "airlockauditrecords.xlscsde.nhs.uk", work),
        ("list", "airlockauditrecords.xlscsde.nhs.uk", work),
    ]
    denied = [
        ("create", "analyticsworkspacedatasources.xlscsde.nhs.uk", crs),
        ("delete", "analyticsworkspacedatasources.xlscsde.nhs.uk", crs),
        ("create", "analyticsworkspaces.xlscsde.nhs.uk", crs),
        ("get", "secrets", crs),                    # only the workload namespace's Secrets
        ("get", "secrets", "default"),
        ("create", "jobs.batch", "default"),
        ("watch", "analyticsworkspacedatasources.xlscsde.nhs.uk", "default"),
        ("update", "jobs.batch", work),
        ("patch", "deployments.apps", work, ("--subresource=scale",)),   # not needed: a merge patch does it
        ("delete", "pods", work),
        ("create", "pods", work, ("--subresource=exec",)),
        ("update", "leases.coordination.k8s.io/someone-elses-lease", work),
        ("list", "leases.coordination.k8s.io", work),
        ("list", "nodes", None),
        ("list", "clusterroles.rbac.authorization.k8s.io", None),
        ("create", "rolebindings.rbac.authorization.k8s.io", work),
        ("list", "namespaces", None),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", None),
        ("list", "analyticsworkspacedatasources.xlscsde.nhs.uk", None),  # not cluster-wide
        # The audit log is append-only: nobody's records can be edited or removed.
        ("update", "airlockauditrecords.xlscsde.nhs.uk", work),
        ("patch", "airlockauditrecords.xlscsde.nhs.uk", work),
        ("delete", "airlockauditrecords.xlscsde.nhs.uk", work),
        ("deletecollection", "airlockauditrecords.xlscsde.nhs.uk", work),
        ("create", "airlockauditrecords.xlscsde.nhs.uk", crs),
        ("*", "*", work),
    ]
    wrong = [c for c in allowed if not can(c[0], c[1], c[2], *c[3:])]
    assert not wrong, f"the chart's RBAC refuses what the operator needs: {wrong}"
    wrong = [c for c in denied if can(c[0], c[1], c[2], *c[3:])]
    assert not wrong, f"the chart's RBAC grants more than the operator needs: {wrong}"


def test_helm_install_and_uninstall(kube, helm_bin):
    """A real `helm install` (there are no controllers, so nothing runs; the
    API server stores every object) prints NOTES.txt; uninstall removes the
    operator's objects and keeps the CRDs."""
    suffix = uuid.uuid4().hex[:6]
    release, home, work = f"i{suffix}", f"helm-inst-{suffix}", f"helm-inst-work-{suffix}"
    for ns in (home, work):
        _ensure_namespace(kube, ns)
    out = kube.helm("install", release, str(CHART), "-n", home, "--set", f"namespace={work}").stdout
    assert "NOTES:" in out and f"get lease airlock-operator" in out, out
    assert f"auth can-i create jobs.batch -n {work}" in out, out
    dep = kube.kubectl_json("get", "deployment", "-n", home, "-l",
                            f"app.kubernetes.io/instance={release}")
    assert [d["metadata"]["name"] for d in dep["items"]] == [f"{release}-airlock-operator"]
    roles = kube.kubectl_json("get", "role", "-n", work, "-l", f"app.kubernetes.io/instance={release}")
    assert len(roles["items"]) == 1
    # The uploaders' proxy secret is made once and kept across upgrades (helm lookup).
    first = _secret_value(kube.kubectl_json("get", "secret", "-n", work, f"{release}-airlock-uploader-proxy"))
    kube.helm("upgrade", release, str(CHART), "-n", home, "--set", f"namespace={work}")
    again = _secret_value(kube.kubectl_json("get", "secret", "-n", work, f"{release}-airlock-uploader-proxy"))
    assert len(first) == 48 and again == first
    kube.helm("uninstall", release, "-n", home)
    dep = kube.kubectl_json("get", "deployment", "-n", home, "-l",
                            f"app.kubernetes.io/instance={release}")
    assert dep["items"] == []
    kube.kubectl("get", "crd", "analyticsworkspacedatasources.xlscsde.nhs.uk")


# ---- the frontend ------------------------------------------------------------------------------

def _frontend(objs: list[dict]) -> tuple[dict, dict, dict]:
    """(Deployment, pod spec, container) of the frontend."""
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "airlock-frontend")
    pod = dep["spec"]["template"]["spec"]
    return dep, pod, pod["containers"][0]


def test_frontend_renders(helm_bin):
    objs = docs(render(helm_bin, *VALUE_SETS["frontend"]))
    dep, pod, c = _frontend(objs)
    assert c["image"] == "airlock:0.1.0"
    assert c["args"] == ["frontend", "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/airlock",
                         "--config", "/etc/airlock/airlock.yaml"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env == {"AIRLOCK_NAMESPACE": "jupyterhub", "AIRLOCK_WATCH_NAMESPACE": "jupyterhub",
                   "AIRLOCK_LOG_FORMAT": "json",
                   "AIRLOCK_UPLOADER_PROXY_SECRET_FILE": "/var/run/airlock/proxy-secret/secret"}
    # One replica, and the old pod stops before the new one opens the SQLite volume.
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}}
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532 and psc["fsGroup"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "capabilities": {"drop": ["ALL"]}}
    assert pod["serviceAccountName"] == "airlock-frontend"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["data"]["mountPath"] == "/var/lib/airlock"
    assert mounts["config"] == {"name": "config", "mountPath": "/etc/airlock", "readOnly": True}
    assert "oidc-client-secret" not in mounts
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["data"]["persistentVolumeClaim"] == {"claimName": "airlock-frontend-data"}
    [pvc] = [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "airlock-frontend-data"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    [cm] = [o for o in objs if o["kind"] == "ConfigMap"]
    config = yaml.safe_load(cm["data"]["airlock.yaml"])
    assert config == {"web": {"externalUrl": "http://airlock.example.org", "sessionIdleSeconds": 1800}}
    assert dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    # The Service is what the operator sends the uploaders' Ingresses to.
    op_env = _operator_env(objs)
    svc = next(o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == op_env["AIRLOCK_FRONTEND_SERVICE"])
    assert svc["spec"]["ports"] == [{"name": "http", "port": int(op_env["AIRLOCK_FRONTEND_SERVICE_PORT"]),
                                     "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    [ing] = [o for o in objs if o["kind"] == "Ingress"]
    assert ing["spec"]["rules"][0]["host"] == "airlock.example.org"
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == \
        {"name": "airlock-frontend", "port": {"name": "http"}}

    # OIDC: the client secret is a mounted file named in the settings, never an
    # environment variable; TLS on the Ingress makes the external URL https.
    objs = docs(render(helm_bin, *VALUE_SETS["frontend-oidc"], "--set-json",
                       'frontend.oidc.extra={"leewaySeconds": 30}'))
    dep, pod, c = _frontend(objs)
    [cm] = [o for o in objs if o["kind"] == "ConfigMap"]
    config = yaml.safe_load(cm["data"]["airlock.yaml"])
    assert config == {"web": {"externalUrl": "https://airlock.example.org", "sessionIdleSeconds": 1800},
                      "oidc": {"issuer": "https://kc.example.org/realms/sde", "clientId": "airlock",
                               "clientSecretFile": "/var/run/airlock/oidc/client-secret", "groupsClaim": "groups",
                               "workspaceGroupPrefix": "/jupyter-workspaces/", "leewaySeconds": 30}}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["oidc-client-secret"] == {"name": "oidc-client-secret", "mountPath": "/var/run/airlock/oidc",
                                            "readOnly": True}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["oidc-client-secret"]["secret"] == {"secretName": "kc-airlock", "defaultMode": 0o440,
                                                    "items": [{"key": "client-secret", "path": "client-secret"}]}
    assert not any("SECRET" in e["name"] and e["name"] != "AIRLOCK_UPLOADER_PROXY_SECRET_FILE" for e in c["env"])
    # Without persistence: an emptyDir, and no claim.
    assert "emptyDir" in vols["data"] and not any(o["kind"] == "PersistentVolumeClaim" for o in objs)

    # More than one replica is refused (SQLite on one volume); a client secret needs an issuer.
    out = helm(helm_bin, "template", "airlock", str(CHART), "--set", "frontend.enabled=true,frontend.replicas=2",
               check=False)
    assert out.returncode != 0 and "frontend.replicas" in out.stderr, out.stderr
    out = helm(helm_bin, "template", "airlock", str(CHART), "--set",
               "frontend.enabled=true,frontend.oidc.clientSecret.secretName=x", check=False)
    assert out.returncode != 0 and "frontend.oidc.issuer" in out.stderr, out.stderr


def test_every_frontend_value_is_rendered(helm_bin):
    """Each frontend value, set to something of its own, shows in the output."""
    sets = {
        "frontend.image.repository": "reg.example/fe", "frontend.image.tag": "9.9.9",
        "frontend.extraArgs[0]": "--log-format=text", "frontend.replicas": "0",
        "frontend.containerPort": "8181", "frontend.logFormat": "text",
        "frontend.externalUrl": "https://fe.example.net", "frontend.sessionIdleSeconds": "601",
        "frontend.oidc.issuer": "https://kc.example.net/realms/x", "frontend.oidc.clientId": "client-x",
        "frontend.oidc.clientSecret.secretName": "sec-x", "frontend.oidc.clientSecret.key": "key-x",
        "frontend.oidc.groupsClaim": "claim-x", "frontend.oidc.workspaceGroupPrefix": "/prefix-x/",
        "frontend.oidc.extra.caFile": "/ca-x.pem", "frontend.uploaderUrlTemplate": "http://{name}.{namespace}:8088",
        "frontend.persistence.storageClass": "class-x", "frontend.persistence.size": "7Gi",
        "frontend.persistence.accessMode": "ReadWriteOncePod",
        "frontend.service.type": "NodePort", "frontend.service.port": "8099",
        "frontend.ingress.className": "ingress-x", "frontend.ingress.host": "host-x.example.net",
        "frontend.ingress.annotations.note-x": "annotation-x",
        "frontend.resources.limits.memory": "333Mi", "frontend.podSecurityContext.runAsUser": "4242",
        "frontend.securityContext.runAsGroup": "4343", "frontend.podAnnotations.pod-x": "pod-annotation-x",
        "frontend.podLabels.label-x": "label-value-x", "frontend.nodeSelector.node-x": "node-value-x",
        "frontend.tolerations[0].key": "toleration-x", "frontend.affinity.nodeAffinity.x": "affinity-x",
        "frontend.extraEnv[0].name": "EXTRA_X", "frontend.extraEnv[0].value": "extra-value-x",
    }
    numbers = {"frontend.replicas", "frontend.containerPort", "frontend.sessionIdleSeconds", "frontend.service.port",
               "frontend.podSecurityContext.runAsUser", "frontend.securityContext.runAsGroup"}
    args = ["--set", "frontend.enabled=true"]
    for k, v in sets.items():
        args += ["--set" if k in numbers else "--set-string", f"{k}={v}"]
    text = render(helm_bin, *args, "--set", "frontend.ingress.tls[0].secretName=tls-x")
    for k, v in sets.items():
        needle = f": {v}" if k in numbers else v
        assert needle in text, f"{k}={v} does not show in the rendered chart"
    assert 'name: AIRLOCK_LOG_FORMAT\n              value: "text"' in text
    assert "tls-x" in text
    text = render(helm_bin, "--set", "frontend.enabled=true,frontend.persistence.existingClaim=claim-x")
    assert "claimName: claim-x" in text and "kind: PersistentVolumeClaim" not in text
    text = render(helm_bin, "--set", "frontend.enabled=true,frontend.ingress.enabled=false")
    assert "kind: Ingress" not in text


def test_frontend_permissions_as_the_api_server_decides(kube, helm_bin):
    """The frontend's ServiceAccount, with the chart's Roles applied for real:
    allowed exactly the calls it makes, refused the rest."""
    suffix = uuid.uuid4().hex[:6]
    work, crs, home = f"fe-work-{suffix}", f"fe-crs-{suffix}", f"fe-home-{suffix}"
    for ns in (work, crs, home):
        _ensure_namespace(kube, ns)
    release = f"f{suffix}"
    manifest = render(helm_bin, "--set", f"frontend.enabled=true,namespace={work},watchNamespace={crs}",
                      namespace=home, release=release)
    rbac = [o for o in docs(manifest) if o["kind"] in ("ServiceAccount", "Role", "RoleBinding")
            and o["metadata"]["labels"].get("app.kubernetes.io/component") == "frontend"]
    assert sorted(o["kind"] for o in rbac) == ["Role", "Role", "RoleBinding", "RoleBinding", "ServiceAccount"]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    sa = next(o for o in rbac if o["kind"] == "ServiceAccount")["metadata"]["name"]
    who = f"system:serviceaccount:{home}:{sa}"

    def can(verb: str, resource: str, ns: str | None, extra: tuple[str, ...] = ()) -> bool:
        args = ["auth", "can-i", verb, resource, f"--as={who}", "--as-group=system:serviceaccounts",
                f"--as-group=system:serviceaccounts:{home}", *extra]
        args += ["-n", ns] if ns else []
        proc = kube.kubectl(*args, check=False)
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stderr}"
        return answer == "yes"

    ds, dsb = "analyticsworkspacedatasources.xlscsde.nhs.uk", "analyticsworkspacedatabindings.xlscsde.nhs.uk"
    ws, wsb = "analyticsworkspaces.xlscsde.nhs.uk", "analyticsworkspacebindings.xlscsde.nhs.uk"
    audit = "airlockauditrecords.xlscsde.nhs.uk"
    allowed = [
        # The API over the store.
        ("get", ds, crs), ("list", ds, crs), ("create", ds, crs), ("update", ds, crs), ("delete", ds, crs),
        ("patch", ds, crs, ("--subresource=status",)), ("update", ds, crs, ("--subresource=status",)),
        ("get", dsb, crs), ("list", dsb, crs), ("create", dsb, crs), ("update", dsb, crs), ("delete", dsb, crs),
        ("get", ws, crs), ("list", ws, crs), ("get", wsb, crs), ("list", wsb, crs),
        # The audit log, beside the operator's.
        ("create", audit, work), ("get", audit, work), ("list", audit, work),
        # The uploaders: uploader_get, uploader_wake, uploader_activity_touch.
        ("get", "deployments.apps", work), ("patch", "deployments.apps", work),
    ]
    denied = [
        ("watch", ds, crs), ("patch", ds, crs), ("deletecollection", ds, crs),
        ("update", ds, crs, ("--subresource=finalizers",)),
        ("create", ws, crs), ("update", ws, crs), ("delete", ws, crs), ("create", wsb, crs), ("delete", wsb, crs),
        ("create", ds, work), ("get", ds, "default"),          # the custom resources only where they live
        ("update", audit, work), ("patch", audit, work), ("delete", audit, work), ("create", audit, crs),
        ("list", "deployments.apps", work), ("watch", "deployments.apps", work),
        ("create", "deployments.apps", work), ("update", "deployments.apps", work),
        ("delete", "deployments.apps", work),
        ("patch", "deployments.apps", work, ("--subresource=scale",)),
        ("update", "deployments.apps", work, ("--subresource=scale",)),
        ("patch", "deployments.apps", crs), ("get", "deployments.apps", "default"),
        ("get", "secrets", work), ("list", "secrets", work), ("get", "secrets", home),
        ("get", "secrets", crs),
        ("create", "jobs.batch", work), ("get", "jobs.batch", work),
        ("create", "persistentvolumeclaims", work), ("get", "services", work),
        ("create", "ingresses.networking.k8s.io", work), ("get", "pods", work),
        ("create", "pods", work, ("--subresource=exec",)), ("create", "events", work),
        ("get", "leases.coordination.k8s.io/airlock-operator", work),
        ("list", "nodes", None), ("list", "namespaces", None),
        ("list", ds, None),                                    # not cluster-wide
        ("*", "*", work),
    ]
    wrong = [c for c in allowed if not can(c[0], c[1], c[2], *c[3:])]
    assert not wrong, f"the chart's RBAC refuses what the frontend needs: {wrong}"
    wrong = [c for c in denied if can(c[0], c[1], c[2], *c[3:])]
    assert not wrong, f"the chart's RBAC grants the frontend more than it needs: {wrong}"


# ---- the frontend's admission policy -------------------------------------------------------------

def _admission_policy(objs: list[dict]) -> tuple[dict | None, dict | None]:
    pol = [o for o in objs if o["kind"] == "ValidatingAdmissionPolicy"]
    bnd = [o for o in objs if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert len(pol) <= 1 and len(bnd) <= 1, (pol, bnd)
    return (pol[0] if pol else None), (bnd[0] if bnd else None)


def test_frontend_admission_policy_renders(helm_bin):
    """On with the frontend, for its ServiceAccount only, bound to the uploaders'
    namespace (every namespace with clusterWide, which then refuses the others)."""
    pol, bnd = _admission_policy(docs(render(helm_bin, "--set", "frontend.enabled=true,namespace=work-x",
                                             namespace="home-x", release="rel")))
    assert pol is not None and bnd is not None
    assert pol["apiVersion"] == bnd["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert pol["metadata"]["name"] == bnd["spec"]["policyName"] == "rel-airlock-frontend-uploaders"
    assert "namespace" not in pol["metadata"] and "namespace" not in bnd["metadata"]
    spec = pol["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": ["apps"], "apiVersions": ["*"], "operations": ["UPDATE"], "resources": ["deployments"]}]
    assert spec["matchConditions"] == [{
        "name": "frontend-service-account",
        "expression": 'request.userInfo.username == "system:serviceaccount:home-x:rel-airlock-frontend"'}]
    assert 'request.namespace == "work-x"' in [v["expression"] for v in spec["validations"]]
    assert bnd["spec"]["validationActions"] == ["Deny"]
    assert bnd["spec"]["matchResources"] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "work-x"}}}
    # clusterWide: the frontend's ClusterRole reaches every namespace, so the binding does too.
    pol, bnd = _admission_policy(docs(render(helm_bin, *VALUE_SETS["frontend-clusterWide"])))
    assert pol is not None and "matchResources" not in bnd["spec"]
    assert 'request.namespace == "jupyterhub"' in [v["expression"] for v in pol["spec"]["validations"]]
    # Off on request, and without the frontend.
    for args in (["--set", "frontend.enabled=true,frontend.admissionPolicy.enabled=false"], []):
        assert _admission_policy(docs(render(helm_bin, *args))) == (None, None)


def _uploader_like(name: str, ns: str) -> dict:
    """A Deployment as runtime_kube's uploader_deployment() makes it: its labels,
    0 replicas, an owner annotation."""
    labels = {"app.kubernetes.io/managed-by": "airlock", "app.kubernetes.io/part-of": "airlock",
              "app.kubernetes.io/name": "airlock-uploader", "app.kubernetes.io/instance": name}
    sel = {"app.kubernetes.io/name": "airlock-uploader", "app.kubernetes.io/instance": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                         "annotations": {"xlscsde.nhs.uk/owner": "AnalyticsWorkspaceDataSource/ds-x"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": sel},
                     "template": {"metadata": {"labels": {**sel, "app.kubernetes.io/managed-by": "airlock"}},
                                  "spec": {"containers": [{"name": "uploader", "image": "airlock:0.1.0",
                                                           "args": ["uploader"]}]}}}}


def test_frontend_admission_policy_as_the_api_server_decides(kube, helm_bin):
    """The chart installed for real with the frontend; as the frontend's
    ServiceAccount (impersonated), merge patches like uploader_wake's and
    uploader_activity_touch's on an uploader pass, everything else is refused
    with the policy's message; the operator's ServiceAccount is not affected."""
    suffix = uuid.uuid4().hex[:6]
    ns, release = f"vap-{suffix}", f"v{suffix}"
    _ensure_namespace(kube, ns)
    kube.helm("install", release, str(CHART), "-n", ns, "--set", f"namespace={ns},frontend.enabled=true")
    policy = f"{release}-airlock-frontend-uploaders"
    operator_dep = f"{release}-airlock-operator"
    frontend = ["--as", f"system:serviceaccount:{ns}:{release}-airlock-frontend",
                "--as-group", "system:serviceaccounts", "--as-group", f"system:serviceaccounts:{ns}",
                "--as-group", "system:authenticated"]
    operator = ["--as", f"system:serviceaccount:{ns}:{operator_dep}",
                "--as-group", "system:serviceaccounts", "--as-group", f"system:serviceaccounts:{ns}",
                "--as-group", "system:authenticated"]
    try:
        # The operator makes the uploader (as in a cluster: its own ServiceAccount).
        kube.kubectl("apply", "-f", "-", *operator, input=yaml.safe_dump(_uploader_like("upload-abc", ns)))

        def patch(who: list[str], name: str, body: dict) -> subprocess.CompletedProcess:
            return kube.kubectl("patch", "deployment", name, "-n", ns, "--type=merge", "-p", json.dumps(body),
                                *who, check=False)

        def get(name: str) -> dict:
            return kube.kubectl_json("get", "deployment", name, "-n", ns)

        # A new policy takes effect once the API server has loaded it (about a second).
        deadline = time.monotonic() + 60
        while True:
            out = patch(frontend, operator_dep, {"spec": {"replicas": 0}})
            if out.returncode != 0 and policy in out.stderr:
                break
            assert out.returncode != 0 or time.monotonic() < deadline, \
                f"the policy never refused the frontend's patch of {operator_dep}: {out.stdout}{out.stderr}"
            if out.returncode == 0:
                kube.kubectl("patch", "deployment", operator_dep, "-n", ns, "--type=merge",
                             "-p", '{"spec":{"replicas":2}}')
            time.sleep(0.5)
        assert "is not an airlock uploader" in out.stderr, out.stderr
        # (Its status.typeChecking is written by kube-controller-manager, which the
        # test control plane does not run: an expression that does not compile
        # fails closed, which the allowed patches below would show.)

        # What the frontend sends (src/runtime/uploader_scale.c): allowed.
        woke = {"metadata": {"annotations": {"xlscsde.nhs.uk/scaled-up-at": "2025-01-31T12:00:00Z"}},
                "spec": {"replicas": 1}}
        out = patch(frontend, "upload-abc", woke)
        assert out.returncode == 0, out.stderr
        out = patch(frontend, "upload-abc", {"metadata": {"annotations": {
            "xlscsde.nhs.uk/last-activity": "2025-01-31T12:05:00Z"}}})
        assert out.returncode == 0, out.stderr
        dep = get("upload-abc")
        assert dep["spec"]["replicas"] == 1
        assert dep["metadata"]["annotations"]["xlscsde.nhs.uk/scaled-up-at"] == "2025-01-31T12:00:00Z"
        assert dep["metadata"]["annotations"]["xlscsde.nhs.uk/last-activity"] == "2025-01-31T12:05:00Z"
        assert patch(frontend, "upload-abc", {"spec": {"replicas": 0}}).returncode == 0

        # Anything else: refused, naming the policy and what was wrong.
        refused = [
            ({"spec": {"template": {"spec": {"containers": [{"name": "uploader", "image": "evil:1"}]}}}},
             "not spec.template"),
            ({"spec": {"replicas": 5}}, "only to 0 or 1, not 5"),
            ({"spec": {"paused": True}}, "not spec.paused"),
            ({"metadata": {"labels": {"app.kubernetes.io/instance": "other"}}},
             "labels (app.kubernetes.io/instance)"),
            ({"metadata": {"labels": {"extra": "x"}}}, "labels (extra)"),
            ({"metadata": {"annotations": {"xlscsde.nhs.uk/owner": "someone-else"}}}, "not xlscsde.nhs.uk/owner"),
            ({"metadata": {"annotations": {"xlscsde.nhs.uk/scaled-up-at": "forever"}}}, "only to a UTC time"),
            ({"metadata": {"annotations": {"xlscsde.nhs.uk/last-activity": None}}}, "may not remove them"),
            ({"metadata": {"finalizers": ["example.org/hold"]}}, "owner references or finalizers"),
        ]
        before = get("upload-abc")
        for body, needle in refused:
            out = patch(frontend, "upload-abc", body)
            assert out.returncode != 0, f"the frontend's patch {body} was allowed"
            assert policy in out.stderr and needle in out.stderr, f"{body}: {out.stderr}"
        after = get("upload-abc")
        assert after["spec"] == before["spec"] and after["metadata"]["labels"] == before["metadata"]["labels"]
        assert after["metadata"]["annotations"] == before["metadata"]["annotations"]

        # Any other Deployment, however little is patched: refused.
        for body in ({"spec": {"replicas": 1}},
                     {"spec": {"template": {"spec": {"containers": [{"name": "operator", "image": "evil:1"}]}}}},
                     {"metadata": {"annotations": {"xlscsde.nhs.uk/last-activity": "2025-01-31T12:05:00Z"}}}):
            out = patch(frontend, operator_dep, body)
            assert out.returncode != 0 and "is not an airlock uploader" in out.stderr, f"{body}: {out.stderr}"
        # Nor can it relabel one into an uploader: the labels are read from before the patch.
        out = patch(frontend, operator_dep, {"metadata": {"labels": {"app.kubernetes.io/name": "airlock-uploader",
                                                                     "app.kubernetes.io/managed-by": "airlock"}}})
        assert out.returncode != 0 and "is not an airlock uploader" in out.stderr, out.stderr
        assert "evil" not in json.dumps(get(operator_dep)["spec"])

        # The operator's ServiceAccount is not affected (it owns the uploaders).
        out = patch(operator, "upload-abc", {"spec": {"replicas": 5, "template": {"spec": {"containers": [
            {"name": "uploader", "image": "airlock:0.2.0"}]}}}})
        assert out.returncode == 0, out.stderr
        dep = get("upload-abc")
        assert dep["spec"]["replicas"] == 5
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "airlock:0.2.0"
    finally:
        kube.helm("uninstall", release, "-n", ns, check=False)
    # Uninstalled with the release (cluster-scoped, so not with a namespace).
    out = kube.kubectl("get", "validatingadmissionpolicy", policy, check=False)
    assert out.returncode != 0 and "NotFound" in out.stderr, out.stdout + out.stderr
