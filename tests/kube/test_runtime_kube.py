"""The Kubernetes runtime (src/runtime/runtime_kube.c) against a real
kube-apiserver, driven through tests/kube/runtime_kube_driver.c, which this
module compiles against build/release/lib/libairlock.a.

Every driver call runs as the operator's identity
(system:serviceaccount:airlock:airlock-operator) holding only the RBAC the
Helm chart renders for it, so a call the chart does not allow fails here.
There is no kubelet or Job controller: the tests play the Job controller by
patching Job status, and create Pod objects themselves (whose logs no kubelet
can serve: the real log path is in tests/unit/test_runtime_kube.c).

docs/kube-runtime.md describes the objects checked here.
"""
from __future__ import annotations

import base64
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
DRIVER_SRC = REPO / "tests" / "kube" / "runtime_kube_driver.c"
LIB = REPO / "build" / "release" / "lib" / "libairlock.a"
SEED_UPLOADED = REPO / "tests" / "fixtures" / "resources" / "valid" / "seed-uploaded-datasource.yaml"
PKGS = ["libmicrohttpd", "jansson", "yaml-0.1", "sqlite3", "libsodium", "libcrypto"]
WARN = ["-Wall", "-Wextra", "-Werror", "-Wformat=2", "-Wshadow", "-Wpointer-arith",
        "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wvla", "-Wno-unused-parameter"]

RUNNER_IMAGE = "registry.example.org/airlock:9.9.9"
UPLOADER_IMAGE = "registry.example.org/airlock-uploader:9.9.9"
SETTINGS = {
    "AIRLOCK_STORAGE_CLASS": "jupyter-default",
    "AIRLOCK_STAGING_STORAGE_CLASS": "airlock-staging",
    "AIRLOCK_IMPORT_VOLUME_SIZE": "10Gi",
    "AIRLOCK_STAGING_VOLUME_SIZE": "20Gi",
    "AIRLOCK_VOLUME_ACCESS_MODE": "ReadWriteOnce",
    "AIRLOCK_RUNNER_IMAGE": RUNNER_IMAGE,
    "AIRLOCK_RUNNER_IMAGE_PULL_POLICY": "Always",
    "AIRLOCK_RUNNER_RESOURCES": json.dumps({"requests": {"cpu": "100m", "memory": "128Mi"},
                                            "limits": {"cpu": "1", "memory": "1Gi"}}),
    "AIRLOCK_UPLOADER_IMAGE": UPLOADER_IMAGE,
    "AIRLOCK_INGRESS_CLASS": "nginx",
    "AIRLOCK_INGRESS_HOST": "airlock.example.org",
    "AIRLOCK_INGRESS_ANNOTATIONS": json.dumps({"nginx.ingress.kubernetes.io/proxy-body-size": "0"}),
    "AIRLOCK_JOB_BACKOFF_LIMIT": "0",
    "AIRLOCK_JOB_ACTIVE_DEADLINE_SECONDS": "3600",
    "AIRLOCK_JOB_TTL_SECONDS_AFTER_FINISHED": "86400",
}
MANAGED = {"app.kubernetes.io/managed-by": "airlock"}


def _makefile_version() -> str:
    m = re.search(r"^VERSION\s*:=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    assert m, "Makefile has no VERSION"
    return m.group(1)


def _pkg_config(*args: str) -> list[str]:
    out = subprocess.run(["pkg-config", *args], capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.fixture(scope="session")
def driver(tmp_path_factory) -> Path:
    """The driver, built with the Makefile's flags against the library."""
    proc = subprocess.run(["make", "-s", str(LIB.relative_to(REPO))], cwd=REPO, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, f"make {LIB.relative_to(REPO)} failed:\n{proc.stderr[-4000:]}"
    out = tmp_path_factory.mktemp("driver") / "runtime_kube_driver"
    cmd = ["gcc", "-std=c17", "-D_GNU_SOURCE", f'-DAIRLOCK_VERSION="{_makefile_version()}"', "-Isrc",
           *WARN, "-O1", "-g", *_pkg_config("--cflags", *PKGS, "libcurl"), "-pthread", "-o", str(out),
           str(DRIVER_SRC), str(LIB), *_pkg_config("--libs", *PKGS), "-ldl", "-pthread", "-lm"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    return out


class Setup:
    def __init__(self, kube, driver: Path, ns: str, ds_name: str, ds_uid: str):
        self.kube, self.driver, self.ns = kube, driver, ns
        self.ds_name, self.ds_uid = ds_name, ds_uid
        self.owner = f"xlscsde.nhs.uk/v1,AnalyticsWorkspaceDataSource,{ns},{ds_name},{ds_uid}"
        self.outputs: list[str] = []

    def run(self, *args: str, owner: bool = True, extra_env: dict | None = None) -> dict:
        """Runs the driver as the operator; returns its JSON answer."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
        env.update(SETTINGS, AIRLOCK_NAMESPACE=self.ns, **(extra_env or {}))
        cmd = [str(self.driver), str(self.kube.kubeconfig("operator"))]
        if owner:
            cmd += ["--owner", self.owner]
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=120)
        self.outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"driver {' '.join(args)}: exit {proc.returncode}\n{proc.stderr}"
        return json.loads(proc.stdout)

    def ok(self, *args: str, **kw) -> dict:
        res = self.run(*args, **kw)
        assert res["rc"] == "ok", f"{' '.join(args)}: {res}"
        return res

    def get(self, kind: str, name: str) -> dict:
        return self.kube.kubectl_json("get", kind, name, "-n", self.ns)

    def exists(self, kind: str, name: str) -> bool:
        proc = self.kube.kubectl("get", kind, name, "-n", self.ns, check=False)
        if proc.returncode == 0:
            return True
        assert "NotFound" in proc.stderr, proc.stderr
        return False

    def owner_refs(self) -> list[dict]:
        return [{"apiVersion": "xlscsde.nhs.uk/v1", "kind": "AnalyticsWorkspaceDataSource",
                 "name": self.ds_name, "uid": self.ds_uid, "controller": True,
                 "blockOwnerDeletion": True}]


@pytest.fixture(scope="module")
def rt(kube, driver) -> Setup:
    """A fresh workload namespace holding the chart's Role and RoleBinding for
    the operator's ServiceAccount, and a datasource to own the children."""
    ns = f"rt-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", ns)
    manifest = kube.helm("template", "airlock", str(CHART), "-n", "airlock",
                         "--set", f"namespace={ns},watchNamespace={ns}").stdout
    rbac = [d for d in yaml.safe_load_all(manifest)
            if d and d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    sa = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]
    # The chart's ServiceAccount must be the identity the `operator` user is.
    assert (sa["namespace"], sa["name"]) == ("airlock", "airlock-operator"), sa
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    ds = yaml.safe_load(SEED_UPLOADED.read_text())
    ds["metadata"] = {"name": "ds-runtime", "namespace": ns}
    kube.kubectl("create", "-f", "-", input=json.dumps(ds))
    uid = kube.kubectl_json("get", "awds", "ds-runtime", "-n", ns)["metadata"]["uid"]
    return Setup(kube, driver, ns, "ds-runtime", uid)


def _labels(obj: dict) -> dict:
    return obj["metadata"].get("labels") or {}


def _env(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


# ---- volumes ----------------------------------------------------------------

def test_staging_claim_is_created_once_and_never_modified(rt):
    name = f"ds-{rt.ds_uid}"
    rt.ok("volume-ensure", "staging", name)
    pvc = rt.get("pvc", name)
    assert pvc["spec"]["storageClassName"] == "jupyter-default"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert _labels(pvc) == {**MANAGED, "app.kubernetes.io/part-of": "airlock",
                            "xlscsde.nhs.uk/volume-class": "staging",
                            "xlscsde.nhs.uk/datasource-uid": rt.ds_uid}
    assert pvc["metadata"]["ownerReferences"] == rt.owner_refs()
    assert pvc["metadata"]["annotations"]["xlscsde.nhs.uk/owner"] == \
        f"AnalyticsWorkspaceDataSource/{rt.ns}/{rt.ds_name}"
    rv = pvc["metadata"]["resourceVersion"]
    # Someone changes the claim: ensuring it again leaves it as it is.
    rt.kube.kubectl("label", "pvc", name, "-n", rt.ns, "touched=yes")
    rv = rt.get("pvc", name)["metadata"]["resourceVersion"]
    rt.ok("volume-ensure", "staging", name)
    again = rt.get("pvc", name)
    assert again["metadata"]["resourceVersion"] == rv
    assert again["metadata"]["uid"] == pvc["metadata"]["uid"]
    items = rt.kube.kubectl_json("get", "pvc", "-n", rt.ns, "-l",
                                 f"xlscsde.nhs.uk/datasource-uid={rt.ds_uid}")["items"]
    assert [i["metadata"]["name"] for i in items].count(name) == 1


def test_workspace_claims_have_no_owner_and_others_are_never_deleted(rt):
    rt.ok("volume-ensure", "workspace", "ws-made-by-airlock")
    pvc = rt.get("pvc", "ws-made-by-airlock")
    assert "ownerReferences" not in pvc["metadata"], "a workspace's storage must outlive its datasources"
    assert _labels(pvc)["xlscsde.nhs.uk/volume-class"] == "workspace"

    # The workspace's own claim, made by someone else, is never deleted.
    rt.kube.kubectl("apply", "-n", rt.ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ws-own"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}))
    res = rt.run("volume-delete", "workspace", "ws-own")
    assert res["rc"] == "forbidden" and "never deletes what it did not create" in res["message"], res
    res = rt.run("volume-delete", "staging", "ws-own")
    assert res["rc"] == "forbidden", res
    assert rt.exists("pvc", "ws-own")
    pvc = rt.get("pvc", "ws-own")
    assert pvc["metadata"].get("deletionTimestamp") is None

    # A workspace claim is not deleted as a staging one either.
    res = rt.run("volume-delete", "staging", "ws-made-by-airlock")
    assert res["rc"] == "forbidden" and "volume-class=workspace" in res["message"], res
    rt.ok("volume-delete", "workspace", "ws-made-by-airlock")
    # Claims carry the pvc-protection finalizer: deleted = marked for deletion.
    gone = not rt.exists("pvc", "ws-made-by-airlock") or \
        rt.get("pvc", "ws-made-by-airlock")["metadata"].get("deletionTimestamp")
    assert gone
    rt.ok("volume-delete", "workspace", "ws-made-by-airlock")   # idempotent
    rt.ok("volume-delete", "staging", "never-existed")


# ---- secrets ----------------------------------------------------------------

def test_secret_is_one_file_replaced_in_place_and_never_printed(rt):
    value1, value2 = f"pw-{uuid.uuid4().hex}", f"pw-{uuid.uuid4().hex}"
    rt.ok("secret-ensure", "job-x-credentials", json.dumps({"DatabricksPassword": value1}))
    sec = rt.get("secret", "job-x-credentials")
    assert sec["type"] == "Opaque"
    assert list(sec["data"]) == ["secret.json"]
    assert json.loads(base64.b64decode(sec["data"]["secret.json"])) == {"DatabricksPassword": value1}
    assert sec["metadata"]["ownerReferences"] == rt.owner_refs()
    assert _labels(sec)["app.kubernetes.io/managed-by"] == "airlock"
    uid = sec["metadata"]["uid"]

    rt.ok("secret-ensure", "job-x-credentials", json.dumps({"DatabricksPassword": value2}))
    sec = rt.get("secret", "job-x-credentials")
    assert sec["metadata"]["uid"] == uid, "replaced in place, not deleted and re-created"
    assert json.loads(base64.b64decode(sec["data"]["secret.json"])) == {"DatabricksPassword": value2}

    res = rt.run("secret-ensure", "job-x-credentials", "[1, 2]")
    assert res["rc"] == "invalid", res

    # A Secret the airlock did not make is neither replaced nor deleted.
    rt.kube.kubectl("create", "secret", "generic", "airlock-source-credentials", "-n", rt.ns,
                    "--from-literal=DatabricksPassword=keep-me")
    res = rt.run("secret-ensure", "airlock-source-credentials", json.dumps({"x": value1}))
    assert res["rc"] == "forbidden", res
    res = rt.run("secret-delete", "airlock-source-credentials")
    assert res["rc"] == "forbidden", res
    kept = rt.get("secret", "airlock-source-credentials")
    assert base64.b64decode(kept["data"]["DatabricksPassword"]) == b"keep-me"

    rt.ok("secret-delete", "job-x-credentials")
    assert not rt.exists("secret", "job-x-credentials")
    rt.ok("secret-delete", "job-x-credentials")
    assert not any(value1 in out or value2 in out for out in rt.outputs), "a secret value was printed"


# ---- jobs -------------------------------------------------------------------

def _start_import(rt, job: str) -> None:
    vol = f"ds-{rt.ds_uid}"
    rt.ok("volume-ensure", "staging", vol)
    rt.ok("secret-ensure", f"{job}-credentials", json.dumps({"u": "p"}))
    rt.ok("secret-ensure", f"{job}-definition", json.dumps({"spec": {"type": "Import"}}))
    rt.ok("job-start", job, "--timeout", "900",
          "--mount", f"volume:staging:{vol}:AIRLOCK_OUTPUT_DIR",
          "--mount", f"secret:{job}-definition:AIRLOCK_DATASOURCE_FILE",
          "--mount", f"secret:{job}-credentials:AIRLOCK_CREDENTIALS_FILE",
          "--", "run-job")


def test_job_object_exactly(rt):
    job = f"import-{rt.ds_uid}-1"
    _start_import(rt, job)
    j = rt.get("job", job)
    assert j["metadata"]["ownerReferences"] == rt.owner_refs()
    assert _labels(j)["job-name"] == job and _labels(j)["app.kubernetes.io/managed-by"] == "airlock"
    spec = j["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 900          # the spec's timeout wins
    assert spec["ttlSecondsAfterFinished"] == 86400
    tmpl = spec["template"]
    assert tmpl["metadata"]["labels"]["job-name"] == job
    assert tmpl["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "airlock"
    pod = tmpl["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                      "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
    [c] = pod["containers"]
    assert c["name"] == "airlock" and c["image"] == RUNNER_IMAGE and c["imagePullPolicy"] == "Always"
    assert c["args"] == ["run-job"] and "command" not in c
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "privileged": False, "capabilities": {"drop": ["ALL"]}}
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["resources"] == json.loads(SETTINGS["AIRLOCK_RUNNER_RESOURCES"])
    assert _env(c) == {
        "AIRLOCK_JOB_NAME": job,
        "AIRLOCK_OUTPUT_DIR": "/mnt/airlock_output_dir",
        "AIRLOCK_DATASOURCE_FILE": "/var/run/airlock/airlock_datasource_file/secret.json",
        "AIRLOCK_CREDENTIALS_FILE": "/var/run/airlock/airlock_credentials_file/secret.json",
    }
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/mnt/airlock_output_dir", "/var/run/airlock/airlock_datasource_file",
                           "/var/run/airlock/airlock_credentials_file"}
    assert not mounts["/mnt/airlock_output_dir"].get("readOnly")
    assert mounts["/var/run/airlock/airlock_credentials_file"]["readOnly"] is True
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["tmp"] == {"name": "tmp", "emptyDir": {}}
    out = vols[mounts["/mnt/airlock_output_dir"]["name"]]
    assert out["persistentVolumeClaim"] == {"claimName": f"ds-{rt.ds_uid}"}
    cred = vols[mounts["/var/run/airlock/airlock_credentials_file"]["name"]]["secret"]
    assert cred == {"secretName": f"{job}-credentials", "defaultMode": 0o440,
                    "items": [{"key": "secret.json", "path": "secret.json"}]}


def test_read_only_mount_and_default_deadline(rt):
    vol = f"ds-{rt.ds_uid}"
    rt.ok("volume-ensure", "staging", vol)
    job = f"check-{rt.ds_uid}-1-0"
    rt.ok("job-start", job, "--mount", f"volume:staging:{vol}:AIRLOCK_DATA_DIR:ro", "--",
          "check-job", "--max-files", "10")
    j = rt.get("job", job)
    pod = j["spec"]["template"]["spec"]
    assert j["spec"]["activeDeadlineSeconds"] == 3600        # AIRLOCK_JOB_ACTIVE_DEADLINE_SECONDS
    [c] = pod["containers"]
    assert c["args"] == ["check-job", "--max-files", "10"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/mnt/airlock_data_dir")
    assert mount["readOnly"] is True
    vol_src = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert vol_src["persistentVolumeClaim"] == {"claimName": vol, "readOnly": True}


def test_job_never_starts_twice_and_needs_its_mounts(rt):
    job = f"import-{rt.ds_uid}-2"
    _start_import(rt, job)
    uid = rt.get("job", job)["metadata"]["uid"]
    res = rt.run("job-start", job, "--", "run-job")
    assert res["rc"] == "already_exists" and "never runs twice" in res["message"], res
    assert rt.get("job", job)["metadata"]["uid"] == uid
    res = rt.run("job-start", "import-missing", "--mount", "secret:no-such-secret:AIRLOCK_X", "--", "run-job")
    assert res["rc"] == "not_found" and "no-such-secret" in res["message"], res
    res = rt.run("job-start", "import-missing", "--mount", "volume:staging:no-such-claim:AIRLOCK_X", "--",
                 "run-job")
    assert res["rc"] == "not_found" and "no-such-claim" in res["message"], res
    assert not rt.exists("job", "import-missing")
    res = rt.run("job-start", "bad.name", "--", "run-job")
    assert res["rc"] == "invalid", res


def _patch_status(rt, job: str, status: dict) -> None:
    rt.kube.kubectl("patch", "job", job, "-n", rt.ns, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))


def _make_pod(rt, job: str, name: str, node: str | None = None, terminated: dict | None = None) -> None:
    """A pod as the Job controller would make it: the template's labels."""
    labels = rt.get("job", job)["spec"]["template"]["metadata"]["labels"]
    spec = {"restartPolicy": "Never", "containers": [{"name": "airlock", "image": RUNNER_IMAGE}]}
    if node:
        spec["nodeName"] = node
    rt.kube.kubectl("create", "-n", rt.ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}))
    if terminated:
        rt.kube.kubectl("patch", "pod", name, "-n", rt.ns, "--subresource=status", "--type=merge",
                        "-p", json.dumps({"status": {"phase": "Failed", "containerStatuses": [{
                            "name": "airlock", "image": RUNNER_IMAGE, "imageID": "", "ready": False,
                            "restartCount": 0, "state": {"terminated": terminated}}]}}))


T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def test_job_get_follows_the_job_status(rt):
    job = f"import-{rt.ds_uid}-3"
    _start_import(rt, job)
    res = rt.ok("job-get", job)
    assert res["phase"] == "running" and res["started_at"] is None
    _patch_status(rt, job, {"startTime": T0, "active": 1})
    res = rt.ok("job-get", job)
    assert res["phase"] == "running" and res["started_at"] == T0
    _patch_status(rt, job, {"active": 0, "succeeded": 1, "completionTime": T1, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": T1},
        {"type": "Complete", "status": "True", "lastTransitionTime": T1}]})
    res = rt.ok("job-get", job)
    assert (res["phase"], res["exit_code"], res["finished_at"], res["reason"]) == \
        ("succeeded", 0, T1, None)
    assert rt.ok("job-get", "import-never-started")["phase"] == "not_found"


def test_job_get_failure_reason_from_the_pod(rt):
    job = f"import-{rt.ds_uid}-4"
    _start_import(rt, job)
    failed = [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
               "message": "Job has reached the specified backoff limit", "lastTransitionTime": T1},
              {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
               "message": "Job has reached the specified backoff limit", "lastTransitionTime": T1}]
    _patch_status(rt, job, {"startTime": T0, "failed": 1, "conditions": failed})
    res = rt.ok("job-get", job)      # no pod to ask: the condition says why
    assert res["phase"] == "failed" and res["finished_at"] == T1
    assert res["reason"] == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    _make_pod(rt, job, f"{job}-abcde", terminated={
        "exitCode": 3, "reason": "Error",
        "message": "collecting 2 tables\nconnection 'warehouse' refused: password authentication failed\n"})
    res = rt.ok("job-get", job)
    assert res["reason"] == "exit status 3: connection 'warehouse' refused: password authentication failed"
    assert res["exit_code"] == 3

    slow = f"import-{rt.ds_uid}-5"
    _start_import(rt, slow)
    _patch_status(rt, slow, {"startTime": T0, "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded",
         "message": "Job was active longer than specified deadline", "lastTransitionTime": T1},
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
         "message": "Job was active longer than specified deadline", "lastTransitionTime": T1}]})
    res = rt.ok("job-get", slow)
    assert res["phase"] == "failed" and res["reason"] == "deadline exceeded after 900 s"


def test_job_logs_without_a_kubelet(rt):
    res = rt.run("job-logs", "import-never-started")
    assert res["rc"] == "not_found", res
    job = f"import-{rt.ds_uid}-6"
    _start_import(rt, job)
    assert rt.ok("job-logs", job)["logs"] == ""               # no pod yet: no output
    # A pod on a node that does not exist: its log cannot be had.
    _make_pod(rt, job, f"{job}-zzzzz", node="node-gone")
    res = rt.run("job-logs", job)
    assert res["rc"] == "unavailable", res
    assert f"the log of its pod {job}-zzzzz is not available" in res["message"], res


def test_job_delete_is_idempotent(rt):
    job = f"import-{rt.ds_uid}-7"
    _start_import(rt, job)
    rt.ok("job-delete", job)
    assert not rt.exists("job", job)
    rt.ok("job-delete", job)
    assert rt.ok("job-get", job)["phase"] == "not_found"
    # a Job the airlock did not make is left alone
    rt.kube.kubectl("create", "job", "someone-elses", "-n", rt.ns, f"--image={RUNNER_IMAGE}")
    res = rt.run("job-delete", "someone-elses")
    assert res["rc"] == "forbidden", res
    assert rt.exists("job", "someone-elses")


# ---- uploader ---------------------------------------------------------------

def test_uploader_objects_exactly(rt):
    name, vol = f"upload-{rt.ds_uid}", f"ds-up-{rt.ds_uid}"
    rt.ok("uploader-ensure", name, vol)
    sel = {"app.kubernetes.io/name": "airlock-uploader", "app.kubernetes.io/instance": name}

    pvc = rt.get("pvc", vol)
    assert pvc["spec"]["storageClassName"] == "airlock-staging"   # AIRLOCK_STAGING_STORAGE_CLASS
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert _labels(pvc)["xlscsde.nhs.uk/volume-class"] == "staging"

    dep = rt.get("deployment", name)
    assert dep["spec"]["replicas"] == 0
    assert dep["spec"]["selector"] == {"matchLabels": sel}
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["template"]["metadata"]["labels"] == {**sel, **MANAGED}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    [c] = pod["containers"]
    assert c["image"] == UPLOADER_IMAGE
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["port"] == "http"
    assert _env(c)["AIRLOCK_UPLOADER_BASE_PATH"] == f"/uploads/{name}"
    assert _env(c)["AIRLOCK_UPLOAD_DIR"] == "/data"
    # The proxy secret: the Secret's name and a read-only mount, never a value.
    assert _env(c)["AIRLOCK_UPLOADER_PROXY_SECRET_FILE"] == "/var/run/airlock/proxy-secret/secret"
    ps = next(m for m in c["volumeMounts"] if m["name"] == "proxy-secret")
    assert ps == {"name": "proxy-secret", "mountPath": "/var/run/airlock/proxy-secret", "readOnly": True}
    assert next(v for v in pod["volumes"] if v["name"] == "proxy-secret")["secret"] == \
        {"secretName": "airlock-uploader-proxy", "items": [{"key": "secret", "path": "secret"}],
         "defaultMode": 0o440}
    data = next(m for m in c["volumeMounts"] if m["mountPath"] == "/data")
    assert next(v for v in pod["volumes"] if v["name"] == data["name"])["persistentVolumeClaim"] == \
        {"claimName": vol}

    svc = rt.get("service", name)
    assert svc["spec"]["selector"] == sel
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(80, "http")]

    ing = rt.get("ingress", name)
    assert ing["spec"]["ingressClassName"] == "nginx"
    [rule] = ing["spec"]["rules"]
    assert rule["host"] == "airlock.example.org"
    # Browsers reach the frontend, which proxies to the uploader: never the uploader's Service.
    assert rule["http"]["paths"] == [{"path": f"/uploads/{name}", "pathType": "Prefix",
                                     "backend": {"service": {"name": "airlock-frontend",
                                                             "port": {"number": 80}}}}]
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"

    for obj in (pvc, dep, svc, ing):
        assert obj["metadata"]["ownerReferences"] == rt.owner_refs(), obj["kind"]
        assert _labels(obj)["app.kubernetes.io/managed-by"] == "airlock", obj["kind"]

    uids = {k: rt.get(k, n)["metadata"]["uid"] for k, n in
            (("deployment", name), ("service", name), ("ingress", name), ("pvc", vol))}
    rt.ok("uploader-ensure", name, vol)
    assert uids == {k: rt.get(k, n)["metadata"]["uid"] for k, n in
                    (("deployment", name), ("service", name), ("ingress", name), ("pvc", vol))}

    rt.ok("uploader-delete", name)
    assert not any(rt.exists(k, name) for k in ("deployment", "service", "ingress"))
    assert rt.exists("pvc", vol)                      # the volume goes with volume_delete
    rt.ok("uploader-delete", name)
    res = rt.run("uploader-ensure", "9-not-a-service-name", vol)
    assert res["rc"] == "invalid", res


def test_nothing_was_forbidden_by_the_charts_rbac(rt):
    """Every call above ran as the operator with only the chart's RBAC; the
    only refusals were the runtime's own (objects it did not make)."""
    forbidden = [o for o in rt.outputs if "is forbidden: User" in o]
    assert not forbidden, forbidden


def test_frontend_patches_pass_the_charts_admission_policy(rt, tmp_path):
    """The chart's ValidatingAdmissionPolicy against what is really sent and
    made: an uploader Deployment from runtime_kube (as the operator), woken and
    touched by uploader_wake / uploader_activity_touch (src/runtime/uploader_scale.c)
    with a real token of the frontend's ServiceAccount; the same token may not
    change the uploader's image."""
    kube, ns, home = rt.kube, rt.ns, f"rth-{uuid.uuid4().hex[:6]}"
    kube.kubectl("create", "namespace", home)
    manifest = kube.helm("template", "airlock", str(CHART), "-n", home,
                         "--set", f"frontend.enabled=true,namespace={ns},watchNamespace={ns}").stdout
    objs = [d for d in yaml.safe_load_all(manifest) if d and (
        d["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
        or (d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
            and d["metadata"]["labels"].get("app.kubernetes.io/component") == "frontend"))]
    assert sorted(d["kind"] for d in objs) == ["Role", "RoleBinding", "ServiceAccount",
                                               "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    policy = next(d for d in objs if d["kind"] == "ValidatingAdmissionPolicy")["metadata"]["name"]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objs))
    try:
        # A real token of the frontend's ServiceAccount (TokenRequest), in a kubeconfig.
        token = kube.kubectl("create", "token", "airlock-frontend", "-n", home).stdout.strip()
        cfg = json.loads(kube.kubeconfig().read_text())
        cfg["users"][0]["user"] = {"token": token}
        kcfg = tmp_path / "kubeconfig-frontend"
        kcfg.write_text(json.dumps(cfg))
        kcfg.chmod(0o600)

        name, vol = f"upload-vap-{rt.ds_uid}"[:63], f"ds-vap-{rt.ds_uid}"
        rt.ok("uploader-ensure", name, vol)

        def as_frontend(*args: str) -> dict:
            env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
            env.update(SETTINGS, AIRLOCK_NAMESPACE=ns)
            proc = subprocess.run([str(rt.driver), str(kcfg), *args], capture_output=True, text=True, env=env,
                                  timeout=120)
            assert proc.returncode == 0, f"driver {' '.join(args)}: {proc.stderr}"
            return json.loads(proc.stdout)

        # The policy is in force once the API server has loaded it: the
        # frontend's token changing the uploader's image is refused.
        bad = json.dumps({"spec": {"template": {"spec": {"containers": [{"name": "uploader", "image": "evil:1"}]}}}})
        deadline = time.monotonic() + 60
        while True:
            out = kube.kubectl("--kubeconfig", str(kcfg), "patch", "deployment", name, "-n", ns, "--type=merge",
                               "-p", bad, check=False)
            assert out.returncode != 0 or time.monotonic() < deadline, "the policy never refused the image change"
            if out.returncode != 0:
                break
            # Not loaded yet: put the image back (as admin) and try again.
            kube.kubectl("patch", "deployment", name, "-n", ns, "--type=merge", "-p", json.dumps(
                {"spec": {"template": {"spec": {"containers": [{"name": "uploader", "image": UPLOADER_IMAGE}]}}}}))
            time.sleep(0.5)
        assert policy in out.stderr and "not spec.template" in out.stderr, out.stderr

        res = as_frontend("uploader-wake", name)
        assert res["rc"] == "ok", res
        res = as_frontend("uploader-touch", name)
        assert res["rc"] == "ok", res
        dep = rt.get("deployment", name)
        assert dep["spec"]["replicas"] == 1
        ann = dep["metadata"]["annotations"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ann["xlscsde.nhs.uk/scaled-up-at"]), ann
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ann["xlscsde.nhs.uk/last-activity"]), ann
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == UPLOADER_IMAGE
        rt.ok("uploader-delete", name)
    finally:
        kube.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy,
                     "--ignore-not-found", check=False)
