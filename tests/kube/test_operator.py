"""`airlock operator` (src/cli/cmd_operator.c, src/operator/kube_controller.c,
leader.c, metrics.c) against a real kube-apiserver, driven as people drive
it: kubectl apply of the seed's datasources, kubectl patch of their status.

The operator runs as the chart's ServiceAccount
(system:serviceaccount:airlock:airlock-operator) holding only the RBAC the
chart renders for a workload namespace, with the chart's AIRLOCK_*
variables. There is no kubelet and no Job controller: the tests play the
Job controller by patching Job status, as tests/kube/test_runtime_kube.py
does. Nor is there a garbage collector: what goes when a datasource is
deleted goes through the operator's finalizer.

The binary is bin/airlock (build it with `make`); AIRLOCK_OPERATOR_BIN
names another (e.g. build/sanitize/bin/airlock).

Most tests share one API server (the session's `kube`) and one namespace
(`op`). Two need a quiet world of their own (`quiet`): a second API server
started with --watch-cache=false, because only then does compacting etcd
reach a watch (with the watch cache the API server answers old
resourceVersions from its own history), and with nothing else in it, so
that the reconciles of one datasource can be counted.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from kubeenv import KubeEnv, KubeUser, sanitizer_report

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "airlock"
SEED_IMPORT = REPO / "tests" / "fixtures" / "resources" / "valid" / "seed-import-datasource.yaml"
SEED_UPLOADED = REPO / "tests" / "fixtures" / "resources" / "valid" / "seed-uploaded-datasource.yaml"
FINALIZER = "xlscsde.nhs.uk/airlock-cleanup"
WORKSPACE = "advanced-generic-workspace"
RUNNER_IMAGE = "registry.example.org/airlock:9.9.9"
DLT_IMAGE = "registry.example.org/airlock-dlt-runner:9.9.9"
PASSWORD = "s3cr3t-Pa55word-never-logged"
SETTINGS = {
    "AIRLOCK_LOG_FORMAT": "json",
    "AIRLOCK_STORAGE_CLASS": "jupyter-default",
    "AIRLOCK_STAGING_STORAGE_CLASS": "airlock-staging",
    "AIRLOCK_IMPORT_VOLUME_SIZE": "10Gi",
    "AIRLOCK_STAGING_VOLUME_SIZE": "20Gi",
    "AIRLOCK_VOLUME_ACCESS_MODE": "ReadWriteOnce",
    "AIRLOCK_SOURCE_CREDENTIALS_SECRET": "airlock-source-credentials",
    "AIRLOCK_RUNNER_IMAGE": RUNNER_IMAGE,
    "AIRLOCK_RUNNER_IMAGE_PULL_POLICY": "IfNotPresent",
    "AIRLOCK_DLT_RUNNER_IMAGE": DLT_IMAGE,
    "AIRLOCK_RUNNER_RESOURCES": json.dumps({"requests": {"cpu": "100m", "memory": "128Mi"},
                                            "limits": {"cpu": "1", "memory": "1Gi"}}),
    "AIRLOCK_JOB_ACTIVE_DEADLINE_SECONDS": "3600",
    "AIRLOCK_JOB_BACKOFF_LIMIT": "0",
    "AIRLOCK_JOB_TTL_SECONDS_AFTER_FINISHED": "86400",
    "AIRLOCK_UPLOADER_IMAGE": "registry.example.org/airlock:9.9.9",
    "AIRLOCK_INGRESS_CLASS": "nginx",
    "AIRLOCK_INGRESS_HOST": "airlock.example.org",
    "AIRLOCK_INGRESS_TLS_SECRET": "",
    "AIRLOCK_INGRESS_ANNOTATIONS": "{}",
    "AIRLOCK_LEASE_NAME": "airlock-operator",
    # Idle uploaders go back to 0 after this long (the chart's default is 900).
    "AIRLOCK_UPLOADER_IDLE_SECONDS": str(3),
    "AIRLOCK_UPLOADER_PROXY_SECRET": "airlock-uploader-proxy",
    "AIRLOCK_FRONTEND_SERVICE": "airlock-frontend",
    "AIRLOCK_FRONTEND_SERVICE_PORT": "80",
    # Short lease timings so fail-over is quick to test (chart defaults 15/10/2).
    "AIRLOCK_LEASE_DURATION_SECONDS": "6",
    "AIRLOCK_RENEW_DEADLINE_SECONDS": "4",
    "AIRLOCK_RETRY_PERIOD_SECONDS": "1",
}
LEASE_DURATION = 6
UPLOADER_IDLE = 3
PROXY_SECRET = "pr0xy-S3cret-value-never-in-a-spec"
T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z"


def airlock_bin() -> Path:
    override = os.environ.get("AIRLOCK_OPERATOR_BIN")
    path = Path(override) if override else REPO / "bin" / "airlock"
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `make`")
    proc = subprocess.run([str(path), "operator", "--help"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{path} has no `operator` command (exit {proc.returncode}): run `make`\n{proc.stderr}")
    return path


def wait_for(what: str, fn, timeout: float = 30, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Operator:
    """One `airlock operator` process (a replica)."""

    def __init__(self, env_, binary: Path, ns: str, name: str, log_dir: Path, workers: int = 2,
                 kubeconfig: Path | None = None):
        self.kube, self.ns, self.name = env_, ns, name
        self.log_path = log_dir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
        env.update(SETTINGS, AIRLOCK_POD_NAME=name, AIRLOCK_POD_NAMESPACE="airlock",
                   AIRLOCK_WATCH_NAMESPACE=ns, AIRLOCK_LEASE_NAMESPACE=ns)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(binary), "operator", "--kubeconfig", str(kubeconfig or env_.kubeconfig("operator")), "--namespace", ns,
             "--metrics-listen", "127.0.0.1:0", "--leader-election", "--workers", str(workers)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env)
        self.port = int(wait_for(f"{name}'s metrics port", self._port, timeout=20))

    def _port(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.text()[-3000:]}")
        m = re.search(r"metrics listening on port (\d+)", self.text())
        return m.group(1) if m else None

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self) -> dict[str, float]:
        status, body = self.get("/metrics")
        assert status == 200, body
        out = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def leading(self) -> bool:
        return self.metrics()["airlock_leader"] == 1

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop within {timeout} s after signal {sig}")
        self.log.close()
        report = sanitizer_report(self.log_path)
        if report:
            raise AssertionError(f"{self.name}: sanitizer report in its log ({self.log_path}):\n{report}")
        return self.proc.returncode


class Env:
    def __init__(self, kube, ns: str, log_dir: Path, binary: Path):
        self.kube, self.ns, self.log_dir, self.binary = kube, ns, log_dir, binary
        self.operators: list[Operator] = []
        self.proxy: CutProxy | None = None

    def start(self, name: str, **kw) -> Operator:
        op = Operator(self.kube, self.binary, self.ns, name, self.log_dir, **kw)
        self.operators.append(op)
        return op

    def k(self, *args, **kw):
        return self.kube.kubectl(*args, "-n", self.ns, **kw)

    def get(self, kind: str, name: str) -> dict:
        return self.kube.kubectl_json("get", kind, name, "-n", self.ns)

    def exists(self, kind: str, name: str) -> bool:
        proc = self.k("get", kind, name, check=False)
        if proc.returncode == 0:
            return True
        assert "NotFound" in proc.stderr, proc.stderr
        return False

    def deleted(self, kind: str, name: str) -> bool:
        """Gone, or being deleted: with no controllers running, a claim keeps
        the kubernetes.io/pvc-protection finalizer (and an object deleted in
        the foreground the GC's) that a real cluster removes."""
        proc = self.k("get", kind, name, "-o", "json", check=False)
        if proc.returncode != 0:
            assert "NotFound" in proc.stderr, proc.stderr
            return True
        return "deletionTimestamp" in json.loads(proc.stdout)["metadata"]

    def items(self, kind: str, selector: str | None = None) -> list[dict]:
        args = ["get", kind, "-n", self.ns, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return self.kube.kubectl_json(*args)["items"]

    def ds(self, name: str) -> dict:
        return self.get("awds", name)

    def apply_ds(self, obj: dict, ready: bool = True) -> dict:
        self.kube.kubectl("apply", "-n", self.ns, "-f", "-", input=json.dumps(obj))
        if ready:
            self.k("patch", "awds", obj["metadata"]["name"], "--subresource=status", "--type=merge",
                   "-p", json.dumps({"status": {"dataState": "READY"}}))
        return self.ds(obj["metadata"]["name"])

    def status(self, name: str) -> dict:
        return self.ds(name).get("status", {})

    def wait_status(self, name: str, timeout: float = 30, interval: float = 0.2, **want) -> dict:
        def ok():
            st = self.status(name)
            return st if all(st.get(k) == v for k, v in want.items()) else None
        return wait_for(f"{name} status {want}", ok, timeout, interval)

    def events(self, name: str) -> list[dict]:
        return [e for e in self.items("events") if e["involvedObject"].get("name") == name]

    def patch_job(self, job: str, status: dict):
        self.k("patch", "job", job, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}))

    def leader_log(self) -> str:
        return "".join(op.text() for op in self.operators)


def import_ds(name: str, conn_type: str = "sqlite", creds: bool = True) -> dict:
    ds = yaml.safe_load(SEED_IMPORT.read_text())
    ds["metadata"] = {"name": name, "labels": {**ds["metadata"].get("labels", {}),
                                               "xlscsde.nhs.uk/workspace": WORKSPACE}}
    conn = {"type": conn_type, "name": "db", "url": "file:/data/source.db"}
    if creds:
        conn["credentials"] = {"userKey": "DbUser", "passwordKey": "DbPassword"}
    ds["spec"]["connections"] = [conn]
    ds["spec"]["objects"] = [{"table": {"name": "patients", "connection": "db"}}]
    return ds


def uploaded_ds(name: str) -> dict:
    ds = yaml.safe_load(SEED_UPLOADED.read_text())
    ds["metadata"] = {"name": name, "labels": {**ds["metadata"].get("labels", {}),
                                               "xlscsde.nhs.uk/workspace": WORKSPACE}}
    return ds


def owned_by(obj: dict, ds: dict) -> bool:
    return any(r.get("uid") == ds["metadata"]["uid"] and r.get("kind") == "AnalyticsWorkspaceDataSource"
               and r.get("controller") for r in obj["metadata"].get("ownerReferences", []))


def prepare_namespace(kube, ns: str):
    """A workload namespace with the chart's ServiceAccount, Role and
    RoleBinding for the operator, the source-credentials Secret and a
    workspace's own claim."""
    kube.kubectl("create", "namespace", ns)
    manifest = kube.helm("template", "airlock", str(CHART), "-n", "airlock",
                         "--set", f"namespace={ns},watchNamespace={ns}").stdout
    rbac = [d for d in yaml.safe_load_all(manifest)
            if d and d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
    sa = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]
    assert (sa["namespace"], sa["name"]) == ("airlock", "airlock-operator"), sa
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    kube.kubectl("-n", ns, "create", "secret", "generic", "airlock-source-credentials",
                 "--from-literal=DbUser=reader", f"--from-literal=DbPassword={PASSWORD}")
    # The uploaders' proxy secret, as the chart makes it.
    kube.kubectl("-n", ns, "create", "secret", "generic", "airlock-uploader-proxy",
                 f"--from-literal=secret={PROXY_SECRET}")
    # The workspace's own storage: not the airlock's, never to be deleted by it.
    kube.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": WORKSPACE},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))


def stop_all(env: Env):
    codes = {o.name: o.stop(signal.SIGTERM) for o in env.operators if o.alive()}
    # A clean stop exits 0 (under ASan, also without leaks or errors).
    assert all(c == 0 for c in codes.values()), codes


@pytest.fixture(scope="module")
def op(kube, tmp_path_factory):
    """A workload namespace with the chart's Role for the operator's
    ServiceAccount, the source-credentials Secret, a workspace's own claim,
    and one operator replica ("op-a")."""
    binary = airlock_bin()
    ns = f"op-{uuid.uuid4().hex[:8]}"
    prepare_namespace(kube, ns)
    env = Env(kube, ns, tmp_path_factory.mktemp("operator-logs"), binary)
    a = env.start("op-a")
    wait_for("op-a to lead", a.leading, timeout=LEASE_DURATION * 3)
    yield env
    stop_all(env)


class CutProxy:
    """A TCP forwarder from a loopback port to the API server (TLS passes
    through untouched). cut() closes every connection through it at once, as
    a load balancer's restart or a network blip would: the only way to end
    the operator's watch (its timeout is 4 to 6 minutes) without restarting
    the API server."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> int:
        """Closes every connection; returns how many there were."""
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        return len(socks) // 2

    def close(self):
        self.listener.close()
        self.cut()


@pytest.fixture(scope="module")
def quiet(kube_bin, tmp_path_factory):
    """An API server of its own with --watch-cache=false (compacting etcd
    then reaches a watch: 410), one workload namespace, and one operator
    ("op-q", the only one there) that reaches the API server through a
    CutProxy (env.proxy)."""
    binary = airlock_bin()
    operator = KubeUser("system:serviceaccount:airlock:airlock-operator",
                        ["system:serviceaccounts", "system:serviceaccounts:airlock", "system:authenticated"])
    kube = KubeEnv(kube_bin, users={"operator": operator}, watch_cache=False)
    kube.start()
    proxy = None
    env = None
    try:
        kube.apply_crds(REPO / "deploy" / "crds")
        kube.kubectl("create", "namespace", "airlock")
        ns = f"quiet-{uuid.uuid4().hex[:8]}"
        prepare_namespace(kube, ns)
        proxy = CutProxy(kube.port)
        cfg = json.loads(kube.kubeconfig("operator").read_text())
        cfg["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        log_dir = tmp_path_factory.mktemp("operator-quiet-logs")
        via_proxy = log_dir / "kubeconfig-operator-via-proxy"
        via_proxy.write_text(json.dumps(cfg))
        via_proxy.chmod(0o600)
        env = Env(kube, ns, log_dir, binary)
        env.proxy = proxy
        q = env.start("op-q", workers=4, kubeconfig=via_proxy)
        wait_for("op-q to lead", q.leading, timeout=LEASE_DURATION * 3)
        yield env
        stop_all(env)
    finally:
        for o in (env.operators if env else []):
            if o.alive():
                o.stop(signal.SIGKILL)
        if proxy:
            proxy.close()
        kube.stop()


def test_import_creates_claim_secrets_and_hardened_job(op):
    ds = op.apply_ds(import_ds("example-data-source-1"))
    uid = ds["metadata"]["uid"]
    job = f"import-{uid}-1"
    st = op.wait_status("example-data-source-1", stage="Collecting")
    assert st["job"]["name"] == job
    ds = op.ds("example-data-source-1")
    assert FINALIZER in ds["metadata"]["finalizers"]
    pvc = op.get("pvc", f"ds-{uid}")
    assert owned_by(pvc, ds) and pvc["spec"]["storageClassName"] == "jupyter-default"
    j = wait_for("the import job", lambda: op.get("job", job))
    assert owned_by(j, ds)
    spec = j["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 3600
    assert spec["ttlSecondsAfterFinished"] == 86400
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [c] = pod["containers"]
    assert c["image"] == RUNNER_IMAGE and c["args"] == ["run-job"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for suffix in ("credentials", "definition"):
        sec = op.get("secret", f"{job}-{suffix}")
        assert owned_by(sec, ds)
    # The job's Secret carries exactly the keys the connection names, from
    # the source Secret; never the status, an Event or a log.
    import base64
    creds = json.loads(base64.b64decode(op.get("secret", f"{job}-credentials")["data"]["secret.json"]))
    assert creds == {"DbUser": "reader", "DbPassword": PASSWORD}
    assert PASSWORD not in json.dumps(op.ds("example-data-source-1"))
    assert PASSWORD not in json.dumps(op.events("example-data-source-1"))
    assert PASSWORD not in op.leader_log()
    ev = wait_for("a CollectStart Event", lambda: [e for e in op.events("example-data-source-1")
                                                   if e["reason"] == "CollectStart"])
    assert ev[0]["type"] == "Normal" and ev[0]["involvedObject"]["uid"] == uid
    # Bindings reconciled: the datasource is bound to its workspace.
    b = wait_for("the binding", lambda: op.get("awdb", "dsb-example-data-source-1"))
    assert b["spec"] == {"workspace": WORKSPACE, "datasource": "example-data-source-1"}
    assert owned_by(b, ds)


def test_job_complete_moves_data_state_to_completed(op):
    uid = op.ds("example-data-source-1")["metadata"]["uid"]
    job = f"import-{uid}-1"
    op.patch_job(job, {"startTime": T0, "active": 0, "succeeded": 1, "completionTime": T1, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": T1},
        {"type": "Complete", "status": "True", "lastTransitionTime": T1}]})
    st = op.wait_status("example-data-source-1", dataState="Completed")
    assert st["stage"] == "Checking"
    # The job's Secrets go when the job ends; the job itself stays (TTL).
    wait_for("the job's Secrets to go", lambda: not op.exists("secret", f"{job}-credentials")
             and not op.exists("secret", f"{job}-definition"))
    assert op.exists("job", job)
    wait_for("a CollectSucceeded Event", lambda: [e for e in op.events("example-data-source-1")
                                                  if e["reason"] == "CollectSucceeded"])


def test_failed_job_fails_with_reason_and_warning_event(op):
    ds = op.apply_ds(import_ds("import-fails"))
    job = f"import-{ds['metadata']['uid']}-1"
    wait_for("the import job", lambda: op.get("job", job))
    failed = [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
               "message": "Job has reached the specified backoff limit", "lastTransitionTime": T1},
              {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
               "message": "Job has reached the specified backoff limit", "lastTransitionTime": T1}]
    op.patch_job(job, {"startTime": T0, "failed": 1, "conditions": failed})
    st = op.wait_status("import-fails", dataState="Failed")
    assert st["stage"] == "Failed"
    assert "BackoffLimitExceeded" in st["message"], st
    ev = wait_for("a Warning Event", lambda: [e for e in op.events("import-fails") if e["type"] == "Warning"])
    assert ev[0]["reason"] == "CollectFailed" and "BackoffLimitExceeded" in ev[0]["message"]


def test_unknown_connection_type_fails_with_reason_no_crash_loop(op):
    op.apply_ds(import_ds("unknown-type", conn_type="oracle"))
    st = op.wait_status("unknown-type", dataState="Failed")
    assert "oracle" in st["message"] and "supported" in st["message"], st
    ev = wait_for("a Warning Event", lambda: [e for e in op.events("unknown-type") if e["type"] == "Warning"])
    assert "oracle" in ev[0]["message"]
    rv = op.ds("unknown-type")["metadata"]["resourceVersion"]
    time.sleep(3)
    # Failed is final: nothing is retried, nothing more is written.
    assert op.ds("unknown-type")["metadata"]["resourceVersion"] == rv
    assert len([e for e in op.events("unknown-type") if e["type"] == "Warning"]) == 1
    assert all(o.alive() for o in op.operators)


def test_runner_and_format_choose_the_job(op):
    """spec.runner and spec.format decide the Job: the dlt runner's image
    (its entrypoint is the runner: no args) or the airlock image with
    run-job, and AIRLOCK_OUTPUT_FORMAT; parquet with the native runner fails
    before any Job."""
    def job_of(name):
        ds = op.ds(name)
        return wait_for(f"the job of {name}", lambda: op.get("job", f"import-{ds['metadata']['uid']}-1"))

    ds = import_ds("by-dlt")
    ds["spec"].update(runner="dlt", format="parquet")
    op.apply_ds(ds)
    [c] = job_of("by-dlt")["spec"]["template"]["spec"]["containers"]
    assert c["image"] == DLT_IMAGE and not c.get("args"), c
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["AIRLOCK_OUTPUT_FORMAT"] == "parquet", env

    ds = import_ds("native-gz")
    ds["spec"]["format"] = "csv.gz"
    op.apply_ds(ds)
    [c] = job_of("native-gz")["spec"]["template"]["spec"]["containers"]
    assert c["image"] == RUNNER_IMAGE and c["args"] == ["run-job"], c
    assert {e["name"]: e.get("value") for e in c["env"]}["AIRLOCK_OUTPUT_FORMAT"] == "csv.gz"

    ds = import_ds("parquet-native")
    ds["spec"]["format"] = "parquet"
    op.apply_ds(ds)
    st = op.wait_status("parquet-native", dataState="Failed")
    assert "spec.runner: dlt" in st["message"], st
    assert not op.exists("job", f"import-{op.ds('parquet-native')['metadata']['uid']}-1")


def test_missing_credential_fails_with_reason(op):
    ds = import_ds("missing-cred")
    ds["spec"]["connections"][0]["credentials"] = {"userKey": "DbUser", "passwordKey": "NoSuchKey"}
    op.apply_ds(ds)
    st = op.wait_status("missing-cred", dataState="Failed")
    assert "NoSuchKey" in st["message"] and "airlock-source-credentials" in st["message"], st
    assert PASSWORD not in st["message"]


def test_uploaded_gets_claim_deployment_service_ingress(op):
    ds = op.apply_ds(uploaded_ds("ds-782b4a1f07234229980f75f2f651412a"))
    uid = ds["metadata"]["uid"]
    op.wait_status(ds["metadata"]["name"], stage="Uploading")
    ds = op.ds(ds["metadata"]["name"])
    up = f"upload-{uid}"
    pvc = op.get("pvc", f"ds-{uid}")
    assert pvc["spec"]["storageClassName"] == "airlock-staging" and owned_by(pvc, ds)
    dep = op.get("deployment", up)
    assert dep["spec"]["replicas"] == 0 and owned_by(dep, ds)
    assert owned_by(op.get("service", up), ds)
    ing = op.get("ingress", up)
    assert owned_by(ing, ds) and ing["spec"]["ingressClassName"] == "nginx"
    b = wait_for("the binding", lambda: op.get("awdb", "dsb-782b4a1f07234229980f75f2f651412a"))
    assert b["spec"]["datasource"] == ds["metadata"]["name"]


# ---- the uploader's lifecycle (src/runtime/uploader_scale.h) ----

def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def wake(op, up: str):
    """What uploader_wake() sends (the frontend, when a person opens the uploader)."""
    op.k("patch", "deployment", up, "--type=merge", "-p", json.dumps(
        {"metadata": {"annotations": {"xlscsde.nhs.uk/scaled-up-at": utc_now()}}, "spec": {"replicas": 1}}))


def touch(op, up: str):
    """What uploader_activity_touch() sends (the frontend, while it proxies)."""
    op.k("patch", "deployment", up, "--type=merge", "-p", json.dumps(
        {"metadata": {"annotations": {"xlscsde.nhs.uk/last-activity": utc_now()}}}))


def replicas(op, up: str) -> int:
    return op.get("deployment", up)["spec"].get("replicas", 0)


def uploading(op, name: str) -> tuple[dict, str]:
    ds = op.apply_ds(uploaded_ds(name))
    op.wait_status(name, stage="Uploading")
    up = f"upload-{ds['metadata']['uid']}"
    assert replicas(op, up) == 0
    return op.ds(name), up


def test_uploader_mounts_proxy_secret_and_its_ingress_routes_to_the_frontend(op):
    ds, up = uploading(op, "up-secret")
    dep = op.get("deployment", up)
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert {e["name"]: e.get("value") for e in c["env"]}["AIRLOCK_UPLOADER_PROXY_SECRET_FILE"] == \
        "/var/run/airlock/proxy-secret/secret"
    assert {"name": "proxy-secret", "mountPath": "/var/run/airlock/proxy-secret", "readOnly": True} \
        in c["volumeMounts"]
    vol = next(v for v in pod["volumes"] if v["name"] == "proxy-secret")
    assert vol["secret"]["secretName"] == "airlock-uploader-proxy"
    assert vol["secret"]["items"] == [{"key": "secret", "path": "secret"}]
    # The value is in the Secret only: never in the Deployment, the datasource, Events or the log.
    assert PROXY_SECRET not in json.dumps(dep)
    assert PROXY_SECRET not in json.dumps(ds) and PROXY_SECRET not in json.dumps(op.events("up-secret"))
    assert PROXY_SECRET not in op.leader_log()
    # Browsers reach the frontend, which proxies to the uploader's Service.
    [rule] = op.get("ingress", up)["spec"]["rules"]
    assert rule["http"]["paths"] == [{"path": f"/uploads/{up}", "pathType": "Prefix",
                                     "backend": {"service": {"name": "airlock-frontend",
                                                             "port": {"number": 80}}}}]


def wait_replicas_zero(op, up: str, timeout: float) -> float:
    start = time.monotonic()
    wait_for(f"{up} back at 0 replicas", lambda: replicas(op, up) == 0, timeout=timeout, interval=0.1)
    return time.monotonic() - start


def test_idle_uploader_goes_back_to_zero_in_time_and_not_before(op):
    a = op.operators[0]
    before = a.metrics().get('airlock_uploader_scale_downs_total{reason="idle"}', 0)
    _, up = uploading(op, "up-idle")
    wake(op, up)
    woken = time.monotonic()
    # The stamp has seconds precision: it may be up to 1 s older than the wake.
    time.sleep(UPLOADER_IDLE - 1.2)
    assert replicas(op, up) == 1, "scaled down before its idle time"
    wait_replicas_zero(op, up, timeout=UPLOADER_IDLE + 3)
    elapsed = time.monotonic() - woken
    assert UPLOADER_IDLE - 1.2 <= elapsed <= UPLOADER_IDLE + 2.5, elapsed
    ev = wait_for("the UploaderScaledDown Event",
                  lambda: [e for e in op.events("up-idle") if e["reason"] == "UploaderScaledDown"])
    assert ev[0]["type"] == "Normal" and f"not used for {UPLOADER_IDLE} s" in ev[0]["message"], ev
    assert a.metrics()['airlock_uploader_scale_downs_total{reason="idle"}'] >= before + 1
    # At rest it stays at rest: nothing scales it up or down again.
    time.sleep(1)
    assert replicas(op, up) == 0


def test_fresh_activity_postpones_the_scale_down(op):
    _, up = uploading(op, "up-busy")
    wake(op, up)
    woken = time.monotonic()
    # Traffic keeps flowing: the frontend touches it before the idle time ends, twice.
    for _ in range(2):
        time.sleep(UPLOADER_IDLE - 1.5)
        assert replicas(op, up) == 1
        touch(op, up)
    touched = time.monotonic()
    assert touched - woken > UPLOADER_IDLE, "the test must outlast the first idle period"
    time.sleep(UPLOADER_IDLE - 1.2)
    assert replicas(op, up) == 1, "scaled down although it was in use"
    wait_replicas_zero(op, up, timeout=UPLOADER_IDLE + 3)
    assert time.monotonic() - touched <= UPLOADER_IDLE + 2.5


def test_uploader_scaled_by_hand_gets_a_time_then_goes_back_to_zero(op):
    _, up = uploading(op, "up-hand")
    op.k("scale", "deployment", up, "--replicas=2")
    dep = wait_for("the operator's scaled-up-at stamp",
                   lambda: (d := op.get("deployment", up))["metadata"].get("annotations", {})
                   .get("xlscsde.nhs.uk/scaled-up-at") and d, timeout=5)
    assert dep["spec"]["replicas"] == 2
    wait_replicas_zero(op, up, timeout=UPLOADER_IDLE + 4)


def test_sealed_datasource_uploader_goes_to_zero_at_once(op):
    a = op.operators[0]
    before = a.metrics().get('airlock_uploader_scale_downs_total{reason="sealed"}', 0)
    _, up = uploading(op, "up-sealed")
    wake(op, up)
    touch(op, up)
    time.sleep(0.5)
    assert replicas(op, up) == 1
    # "All files uploaded": the datasource leaves Uploading (the frontend fires upload-complete).
    op.k("patch", "awds", "up-sealed", "--subresource=status", "--type=merge",
         "-p", json.dumps({"status": {"stage": "Checking", "dataState": "Completed"}}))
    took = wait_replicas_zero(op, up, timeout=UPLOADER_IDLE)
    assert took < UPLOADER_IDLE - 1.2, f"took {took:.1f} s: that is the idle scale-down, not the seal"
    ev = wait_for("the UploaderScaledDown Event",
                  lambda: [e for e in op.events("up-sealed") if e["reason"] == "UploaderScaledDown"])
    assert "no longer Uploading" in ev[0]["message"], ev
    assert a.metrics()['airlock_uploader_scale_downs_total{reason="sealed"}'] >= before + 1
    # Woken again while sealed (a stale page): down again at once.
    wake(op, up)
    assert wait_replicas_zero(op, up, timeout=UPLOADER_IDLE) < UPLOADER_IDLE - 1.2


def test_delete_removes_children_through_finalizer_never_workspace_claim(op):
    name = "ds-782b4a1f07234229980f75f2f651412a"
    uid = op.ds(name)["metadata"]["uid"]
    up = f"upload-{uid}"
    op.k("delete", "awds", name, "--wait=false")
    wait_for("the datasource to go", lambda: not op.exists("awds", name), timeout=30)
    for kind, obj in (("pvc", f"ds-{uid}"), ("deployment", up), ("service", up), ("ingress", up),
                      ("awdb", "dsb-782b4a1f07234229980f75f2f651412a")):
        assert op.deleted(kind, obj), f"{kind}/{obj} survived its datasource"
    # An Import datasource: its job, Secrets and claim go too.
    ds = op.ds("import-fails")
    iuid = ds["metadata"]["uid"]
    op.k("delete", "awds", "import-fails", "--wait=false")
    wait_for("import-fails to go", lambda: not op.exists("awds", "import-fails"), timeout=30)
    assert op.deleted("job", f"import-{iuid}-1") and op.deleted("pvc", f"ds-{iuid}")
    assert not op.deleted("pvc", WORKSPACE), "the workspace's own claim was deleted"


def test_metrics_and_probes(op):
    a = op.operators[0]
    m = a.metrics()
    for name in ("airlock_reconcile_total", "airlock_reconcile_errors_total", "airlock_workqueue_depth",
                 "airlock_watch_restarts_total", "airlock_leader"):
        assert name in m, name
    assert m["airlock_reconcile_total"] > 0 and m["airlock_leader"] == 1
    assert a.get("/healthz")[0] == 200 and a.get("/readyz")[0] == 200
    assert a.get("/nope")[0] == 404


def settle(o: Operator, still: float = 1.5, timeout: float = 30):
    """Waits until `o` has run no reconcile for `still` seconds (the work
    queue is not empty then: a Collecting datasource waits in it for its
    60 s safety-net poll)."""
    deadline = time.monotonic() + timeout
    last, since = o.metrics()["airlock_reconcile_total"], time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = o.metrics()["airlock_reconcile_total"]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= still:
            return
    raise AssertionError(f"{o.name} kept reconciling for {timeout} s")


JOB_COMPLETE = {"startTime": T0, "active": 0, "succeeded": 1, "completionTime": T1, "conditions": [
    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": T1},
    {"type": "Complete", "status": "True", "lastTransitionTime": T1}]}


def test_job_end_wakes_its_datasource_at_once(op):
    """The Job watch: a running Job is looked at again only by the 60 s
    safety-net poll, so a datasource that reaches Completed within seconds
    of its Job's end was woken by the Job watch."""
    a = op.operators[0]
    ds = op.apply_ds(import_ds("job-wakeup"))
    job = f"import-{ds['metadata']['uid']}-1"
    op.wait_status("job-wakeup", stage="Collecting")
    wait_for("the import job", lambda: op.get("job", job))
    # Let the reconcile that started the job end (it asked to be polled in 60 s).
    settle(a)
    before = a.metrics()["airlock_job_wakeups_total"]
    t0 = time.monotonic()
    op.patch_job(job, JOB_COMPLETE)
    st = op.wait_status("job-wakeup", dataState="Completed", timeout=20, interval=0.05)
    took = time.monotonic() - t0
    assert took < 5, f"Completed {took:.1f} s after the Job ended (the safety-net poll is 60 s)"
    assert st["stage"] == "Checking"
    assert a.metrics()["airlock_job_wakeups_total"] > before
    print(f"Job Complete -> dataState Completed in {took * 1000:.0f} ms")


def test_two_operators_one_leader_and_failover(op):
    a = op.operators[0]
    b = op.start("op-b")
    wait_for("op-b ready", lambda: b.get("/readyz")[0] == 200)
    time.sleep(2)
    assert a.leading() and not b.leading()
    assert b.get("/readyz")[0] == 200          # a standby is ready too (rolling updates)
    lease = op.get("lease", "airlock-operator")
    assert lease["spec"]["holderIdentity"] == "op-a"
    transitions = lease["spec"].get("leaseTransitions", 0)
    # The standby does nothing: a new datasource is reconciled by op-a only.
    op.apply_ds(import_ds("while-two"))
    op.wait_status("while-two", stage="Collecting")
    assert "while-two" not in b.text()
    # kill -9 the leader: op-b takes over within the lease duration (plus a
    # retry period to notice) and acts.
    a.stop(signal.SIGKILL)
    t0 = time.monotonic()
    wait_for("op-b to lead", b.leading, timeout=LEASE_DURATION * 3, interval=0.2)
    took = time.monotonic() - t0
    assert took <= LEASE_DURATION + 2 * 1 + 1, f"fail-over took {took:.1f} s"
    lease = op.get("lease", "airlock-operator")
    assert lease["spec"]["holderIdentity"] == "op-b"
    assert lease["spec"]["leaseTransitions"] == transitions + 1
    op.apply_ds(import_ds("after-failover"))
    op.wait_status("after-failover", stage="Collecting")
    # SIGTERM releases the Lease: a new replica takes it at once.
    assert b.stop(signal.SIGTERM) == 0
    lease = op.get("lease", "airlock-operator")
    assert lease["spec"].get("holderIdentity", "") == ""
    c = op.start("op-c")
    t0 = time.monotonic()
    wait_for("op-c to lead", c.leading, timeout=LEASE_DURATION * 3)
    assert time.monotonic() - t0 < LEASE_DURATION, "a released lease was not taken at once"


def test_nothing_was_forbidden_by_the_charts_rbac(op):
    log = op.leader_log()
    bad = [line for line in log.splitlines() if re.search(r"forbidden|\b403\b", line, re.I)]
    assert not bad, "\n".join(bad[:20])


def _managed(op, kind: str) -> list[dict]:
    return [o for o in op.items(kind, "app.kubernetes.io/managed-by=airlock")
            if "deletionTimestamp" not in o["metadata"]]


def test_killed_midway_through_200_datasources_converges_without_duplicates(op):
    leader = next(o for o in op.operators if o.alive() and o.leading())
    names = [f"bulk-{i:03d}" for i in range(200)]
    docs = [import_ds(n, creds=False) for n in names]
    op.kube.kubectl("apply", "-n", op.ns, "-f", "-", input=yaml.safe_dump_all(docs))
    base = f"/apis/xlscsde.nhs.uk/v1/namespaces/{op.ns}/analyticsworkspacedatasources"
    for n in names:
        status, body = op.kube.api("PATCH", f"{base}/{n}/status", {"status": {"dataState": "READY"}},
                                   content_type="application/merge-patch+json")
        assert status == 200, body
    # Kill -9 the leader part-way through, then start a new replica.
    wait_for("some import jobs", lambda: len(_managed(op, "jobs")) >= 40, timeout=120, interval=0.05)
    leader.stop(signal.SIGKILL)
    made = len(_managed(op, "jobs"))
    assert made < 200 + 10, "the leader finished before it could be killed: nothing to test"
    d = op.start("op-d", workers=4)
    wait_for("op-d to lead", d.leading, timeout=LEASE_DURATION * 3)

    def converged():
        items = {o["metadata"]["name"]: o for o in op.items("awds")}
        if not all(items[n].get("status", {}).get("stage") == "Collecting" for n in names):
            return False
        # The job is started on the pass after the status says Collecting.
        uids = {items[n]["metadata"]["uid"] for n in names}
        return len([j for j in _managed(op, "jobs")
                    if any(r["uid"] in uids for r in j["metadata"].get("ownerReferences", []))]) >= 200
    t0 = time.monotonic()
    wait_for("all 200 to be Collecting with their jobs", converged, timeout=180, interval=1)
    rss = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{d.proc.pid}/status").read_text())
    print(f"converged {time.monotonic() - t0:.1f} s after op-d started; {made} jobs before the kill; "
          f"op-d RSS {int(rss.group(1)) // 1024 if rss else '?'} MB")
    dss = {o["metadata"]["uid"]: o for o in op.items("awds")}
    bulk = {o["metadata"]["uid"]: o for o in dss.values() if o["metadata"]["name"].startswith("bulk-")}
    jobs, pvcs, secrets = _managed(op, "jobs"), _managed(op, "pvc"), _managed(op, "secrets")
    for uid, ds in bulk.items():
        mine = [j["metadata"]["name"] for j in jobs if owned_by(j, ds)]
        assert mine == [f"import-{uid}-1"], (ds["metadata"]["name"], mine)
        assert [p["metadata"]["name"] for p in pvcs if owned_by(p, ds)] == [f"ds-{uid}"]
        assert sorted(s["metadata"]["name"] for s in secrets if owned_by(s, ds)) == \
            [f"import-{uid}-1-credentials", f"import-{uid}-1-definition"]
        assert FINALIZER in ds["metadata"]["finalizers"]
    # No orphans: every child belongs to a datasource that exists.
    for obj in jobs + pvcs + secrets:
        refs = obj["metadata"].get("ownerReferences", [])
        assert refs and all(r["uid"] in dss for r in refs), obj["metadata"]["name"]
    # Bindings: exactly one per datasource.
    bindings = [b for b in op.items("awdb") if b["metadata"]["name"].startswith("dsb-bulk-")]
    assert len(bindings) == 200
    assert not [line for line in d.text().splitlines() if '"error"' in line]


def test_apiserver_restart_watch_recovers(op):
    leader = next(o for o in op.operators if o.alive() and o.leading())
    before = leader.metrics()["airlock_watch_restarts_total"]
    op.kube.restart_apiserver(down_seconds=2)
    wait_for("the leader to lead again", leader.leading, timeout=LEASE_DURATION * 3)
    op.apply_ds(import_ds("after-restart"))
    op.wait_status("after-restart", stage="Collecting", timeout=60)
    assert leader.metrics()["airlock_watch_restarts_total"] > before
    assert leader.alive()


# ---- a quiet API server of its own (no watch cache) ----------------------------------------------

def test_own_write_echoes_are_skipped_and_reconciles_stay_few(quiet):
    """The reconcile goes straight on after its own transition and skips the
    watch echo of its own writes. op-q is alone with this one datasource, so
    its counters count this datasource's reconciles.

    What one Import needs, from creation to its Job: (1) the ADDED event:
    add the finalizer (and the binding); (2) the status patch to READY:
    claim, Collecting, and - going straight on - the Secrets and the Job;
    (3) the watch echo of the Collecting write: skipped. The echo of the
    finalizer write carries no work (no READY yet) and is not even queued,
    unless READY came first. Races add at most two: a 409 when READY lands
    between reading and writing the finalizer (a retry), and one event
    coalesced behind a reconcile in progress. Hence at most 3 reconciles that
    do work and at most 6 in all. Without the echo skip each own write would
    cost one more pass; without going straight on, one more per transition;
    and the old 200/500 ms job polling cost dozens."""
    q = quiet.operators[0]
    settle(q)
    before = q.metrics()
    ds = quiet.apply_ds(import_ds("echo-check"))
    job = f"import-{ds['metadata']['uid']}-1"
    quiet.wait_status("echo-check", stage="Collecting")
    wait_for("the import job", lambda: quiet.get("job", job))
    wait_for("the echo of the Collecting write to be skipped",
             lambda: q.metrics()["airlock_watch_echoes_skipped_total"] > before["airlock_watch_echoes_skipped_total"])
    settle(q, still=2)  # anything late would show now
    after = q.metrics()
    reconciles = after["airlock_reconcile_total"] - before["airlock_reconcile_total"]
    echoes = after["airlock_watch_echoes_skipped_total"] - before["airlock_watch_echoes_skipped_total"]
    print(f"one Import to its Job: {reconciles:.0f} reconciles, {echoes:.0f} echoes skipped, "
          f"{after['airlock_reconcile_conflicts_total'] - before['airlock_reconcile_conflicts_total']:.0f} conflicts")
    assert echoes >= 1
    assert reconciles <= 6, f"{reconciles} reconciles for one datasource"
    assert reconciles - echoes <= 3, f"{reconciles - echoes} reconciles that did work"
    assert after["airlock_reconcile_errors_total"] == before["airlock_reconcile_errors_total"]
    # One status write (Collecting): the echo skip never swallowed a needed pass.
    assert after['airlock_kube_requests_total{verb="PATCH"}'] - before['airlock_kube_requests_total{verb="PATCH"}'] <= 2


def test_compaction_410_under_the_controllers_own_watch_relists(quiet):
    """etcd compaction forcing a 410 under the controller's own datasource
    watch. op-q is stopped (SIGSTOP) and its connections cut, so its watch
    ends at the resourceVersion of the last event it saw; meanwhile
    datasources are created and modified and etcd is compacted past them.
    Resumed (SIGCONT), it watches again from that resourceVersion, gets 410,
    relists, and reconciles what was created during the gap."""
    q = quiet.operators[0]
    quiet.apply_ds(import_ds("before-gap"))
    quiet.wait_status("before-gap", stage="Collecting")
    settle(q)
    before = q.metrics()
    log_from = len(q.text())
    gap = [f"gap-{i:02d}" for i in range(20)]
    q.proc.send_signal(signal.SIGSTOP)
    try:
        assert quiet.proxy.cut() >= 2, "op-q had no connections open (its two watches at least)"
        docs = [import_ds(n, creds=False) for n in gap]
        quiet.kube.kubectl("apply", "-n", quiet.ns, "-f", "-", input=yaml.safe_dump_all(docs))
        quiet.k("annotate", "awds", *gap, "airlock.test/touched=1")
        quiet.k("label", "awds", *gap, "airlock.test/round=2")
        quiet.apply_ds(import_ds("during-gap"))
        compacted = quiet.kube.compact_etcd()
        stopped_at = time.monotonic()
    finally:
        q.proc.send_signal(signal.SIGCONT)
    st = quiet.wait_status("during-gap", stage="Collecting", timeout=60)
    took = time.monotonic() - stopped_at
    uid = quiet.ds("during-gap")["metadata"]["uid"]
    wait_for("the job of during-gap", lambda: quiet.get("job", f"import-{uid}-1"))
    assert st["job"]["name"] == f"import-{uid}-1"
    # Every datasource made during the gap was listed and reconciled (finalizer, binding).
    wait_for("the gap's datasources to get the finalizer", lambda: all(
        FINALIZER in o["metadata"].get("finalizers", []) for o in quiet.items("awds")
        if o["metadata"]["name"].startswith("gap-")), timeout=60)
    assert len([o for o in quiet.items("awds") if o["metadata"]["name"].startswith("gap-")]) == len(gap)
    wait_for("the gap's bindings", lambda: len([b for b in quiet.items("awdb")
                                                if b["metadata"]["name"].startswith("dsb-gap-")]) == len(gap))
    after = q.metrics()
    log = q.text()[log_from:]
    gone = [line for line in log.splitlines()
            if re.search(r"watch analyticsworkspacedatasources: GET .*(too old|[Ee]xpired|relist)", line)]
    print(f"compacted at revision {compacted}; during-gap Collecting {took:.1f} s after SIGCONT; "
          f"watch restarts {before['airlock_watch_restarts_total']:.0f} -> {after['airlock_watch_restarts_total']:.0f}")
    print("\n".join(gone))
    assert gone, f"op-q's log does not show the 410 on its datasource watch:\n{log[-4000:]}"
    assert after["airlock_watch_restarts_total"] > before["airlock_watch_restarts_total"]
    assert q.alive() and q.leading()
    assert not [line for line in log.splitlines() if '"level":"error"' in line]


def test_audit_records_verify_offline(quiet):
    """The operator's audit records (AirlockAuditRecord, in the workload
    namespace) form one hash chain that `airlock audit verify --file`
    accepts, exported as docs/operator.md shows; system actions name the
    operator as the system."""
    records = sorted((o["spec"] for o in quiet.items("airlockauditrecords")), key=lambda r: r["seq"])
    assert len(records) >= 20, len(records)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    actions = {r["action"] for r in records}
    assert {"bind", "collect-start"} <= actions, actions
    assert all(r["actor"] == {"type": "system", "name": "airlock-operator"}
               for r in records if r["action"] in ("bind", "collect-start")), records[:3]
    export = quiet.log_dir / "audit.jsonl"
    export.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    proc = subprocess.run([str(quiet.binary), "audit", "verify", "--file", str(export)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert PASSWORD not in export.read_text()
