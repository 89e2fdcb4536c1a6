#!/usr/bin/env python3
"""Benchmark of `airlock operator` against a real kube-apiserver + etcd
(issue 4, "Figures"). Run it through bench/operator_kube.sh.

Per repetition:
  operator run  a fresh namespace with the chart's RBAC and one `airlock
                operator` (the chart's ServiceAccount identity, AIRLOCK_*
                settings as tests/kube/test_operator.py). COUNT Import
                datasources are applied with `kubectl apply -f` of
                multi-document files of BATCH datasources; right after each
                batch its status (dataState READY, what makes the operator
                act) is applied with `kubectl apply --server-side
                --subresource=status -f`. Two watches (datasources, Jobs) in
                this process record the local receive time of every event.
  baseline      a second fresh namespace: kubectl applies, in batches of the
                same BATCH datasources, the very child objects the operator
                made for each datasource (its claim, its two Secrets and its
                Job, exported from the operator run with server-set fields
                removed), so the baseline creates the same objects.
Then, once: an RSS run, RSS_COUNT datasources with no status (no work for the
operator) created while one operator watches them; VmRSS after it settles.

All times are time.monotonic() in this process. Figures are printed as a
table and written as JSON to $OUT (default /tmp/operator_kube.json).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "kube"))
from kubeenv import KubeEnv, KubeUser, find_tools  # noqa: E402

CHART = REPO / "deploy" / "helm" / "airlock"
SEED_IMPORT = REPO / "tests" / "fixtures" / "resources" / "valid" / "seed-import-datasource.yaml"
WORKSPACE = "advanced-generic-workspace"
OPERATOR = KubeUser("system:serviceaccount:airlock:airlock-operator",
                    ["system:serviceaccounts", "system:serviceaccounts:airlock", "system:authenticated"])
# As tests/kube/test_operator.py, with the chart's default lease timings.
SETTINGS = {
    "AIRLOCK_LOG_FORMAT": "json",
    "AIRLOCK_STORAGE_CLASS": "jupyter-default",
    "AIRLOCK_STAGING_STORAGE_CLASS": "airlock-staging",
    "AIRLOCK_IMPORT_VOLUME_SIZE": "10Gi",
    "AIRLOCK_STAGING_VOLUME_SIZE": "20Gi",
    "AIRLOCK_VOLUME_ACCESS_MODE": "ReadWriteOnce",
    "AIRLOCK_SOURCE_CREDENTIALS_SECRET": "airlock-source-credentials",
    "AIRLOCK_RUNNER_IMAGE": "registry.example.org/airlock:9.9.9",
    "AIRLOCK_RUNNER_IMAGE_PULL_POLICY": "IfNotPresent",
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
    "AIRLOCK_LEASE_DURATION_SECONDS": "15",
    "AIRLOCK_RENEW_DEADLINE_SECONDS": "10",
    "AIRLOCK_RETRY_PERIOD_SECONDS": "2",
}

COUNT = int(os.environ.get("COUNT", "1000"))
BATCH = int(os.environ.get("BATCH", "100"))
REPS = int(os.environ.get("REPS", "3"))
WORKERS = int(os.environ.get("WORKERS", "4"))
RSS_COUNT = int(os.environ.get("RSS_COUNT", "10000"))
RSS_BATCH = int(os.environ.get("RSS_BATCH", "500"))
RSS_SETTLE = float(os.environ.get("RSS_SETTLE", "20"))
TIMEOUT = float(os.environ.get("TIMEOUT", "900"))
OUT = Path(os.environ.get("OUT", "/tmp/operator_kube.json"))
BIN = Path(os.environ.get("AIRLOCK_BIN", REPO / "bin" / "airlock"))
DS_PATH = "/apis/xlscsde.nhs.uk/v1/namespaces/{ns}/analyticsworkspacedatasources"
JOB_PATH = "/apis/batch/v1/namespaces/{ns}/jobs"


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def import_ds(name: str) -> dict:
    ds = yaml.safe_load(SEED_IMPORT.read_text())
    ds["metadata"] = {"name": name, "labels": {**ds["metadata"].get("labels", {}),
                                               "xlscsde.nhs.uk/workspace": WORKSPACE}}
    ds["spec"]["connections"] = [{"type": "sqlite", "name": "db", "url": "file:/data/source.db",
                                  "credentials": {"userKey": "DbUser", "passwordKey": "DbPassword"}}]
    ds["spec"]["objects"] = [{"table": {"name": "patients", "connection": "db"}}]
    return ds


def proc_stat(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:", "Threads:")):
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / tick
    return out


class Watch(threading.Thread):
    """A raw watch on one collection; calls on_event(type, obj, t_recv)."""

    def __init__(self, kube: KubeEnv, path: str, on_event):
        super().__init__(daemon=True)
        self.kube, self.path, self.on_event = kube, path, on_event
        self.ready = threading.Event()
        self.error: Exception | None = None
        self.resp = None

    def run(self):
        url = f"{self.kube.server}{self.path}?watch=1&timeoutSeconds=3600"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.kube.token()}"})
        try:
            self.resp = urllib.request.urlopen(req, context=self.kube._ssl_context(), timeout=None)
            self.ready.set()
            while True:
                line = self.resp.readline()
                t = time.monotonic()
                if not line:
                    return
                ev = json.loads(line)
                self.on_event(ev["type"], ev["object"], t)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = e
            self.ready.set()

    def close(self):
        """Stop recording. The connection is left to the daemon thread: closing
        an HTTPResponse while another thread is blocked in its readline()
        deadlocks on the buffered reader's lock. The watch ends with the
        API server (kube.stop()) or after timeoutSeconds."""
        self.on_event = lambda *_: None


class Recorder:
    """Receive times from the datasource and Job watches of one namespace."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ds_added: dict[str, float] = {}      # name -> first ADDED
        self.ds_ready: dict[str, float] = {}      # name -> first event with dataState READY
        self.uid_name: dict[str, str] = {}
        self.job_added: dict[str, float] = {}     # job name -> ADDED
        self.job_owner: dict[str, str] = {}       # job name -> owner uid
        self.all_jobs = threading.Event()
        self.want = 0

    def on_ds(self, typ, obj, t):
        md = obj.get("metadata", {})
        name = md.get("name")
        with self.lock:
            if typ == "ADDED":
                self.ds_added.setdefault(name, t)
            if md.get("uid"):
                self.uid_name[md["uid"]] = name
            if (obj.get("status") or {}).get("dataState") == "READY":
                self.ds_ready.setdefault(name, t)

    def on_job(self, typ, obj, t):
        md = obj.get("metadata", {})
        if typ != "ADDED":
            return
        with self.lock:
            self.job_added.setdefault(md["name"], t)
            for r in md.get("ownerReferences", []):
                if r.get("kind") == "AnalyticsWorkspaceDataSource":
                    self.job_owner[md["name"]] = r["uid"]
            if self.want and len(self.job_added) >= self.want:
                self.all_jobs.set()


class Operator:
    def __init__(self, kube: KubeEnv, ns: str, log_path: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_") or k == "AIRLOCK_LOG_LEVEL"}
        env.update(SETTINGS, AIRLOCK_POD_NAME=f"bench-{ns}", AIRLOCK_POD_NAMESPACE="airlock",
                   AIRLOCK_WATCH_NAMESPACE=ns, AIRLOCK_LEASE_NAMESPACE=ns)
        self.log_path = log_path
        self.logf = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BIN), "operator", "--kubeconfig", str(kube.kubeconfig("operator")), "--namespace", ns,
             "--metrics-listen", "127.0.0.1:0", "--leader-election", "--workers", str(WORKERS)],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf, env=env)
        deadline = time.monotonic() + 30
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited {self.proc.returncode}; see {log_path}")
            m = re.search(r"metrics listening on port (\d+)", log_path.read_text(errors="replace"))
            self.port = int(m.group(1)) if m else None
            time.sleep(0.1)
        if self.port is None:
            raise RuntimeError(f"operator printed no metrics port; see {log_path}")
        deadline = time.monotonic() + 60
        while not self.metric("airlock_leader"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"operator did not take the Lease in 60 s; see {log_path}")
            time.sleep(0.2)

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            body = r.read().decode()
        out = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def metric(self, name: str) -> float:
        try:
            return self.metrics().get(name, 0)
        except (OSError, urllib.error.URLError):
            return 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        return self.proc.returncode


def setup_namespace(kube: KubeEnv, ns: str, rbac: bool):
    kube.kubectl("create", "namespace", ns)
    if rbac:
        manifest = kube.helm("template", "airlock", str(CHART), "-n", "airlock",
                             "--set", f"namespace={ns},watchNamespace={ns}").stdout
        docs = [d for d in yaml.safe_load_all(manifest)
                if d and d["kind"] in ("ServiceAccount", "Role", "RoleBinding")]
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
        kube.kubectl("-n", ns, "create", "secret", "generic", "airlock-source-credentials",
                     "--from-literal=DbUser=reader", "--from-literal=DbPassword=bench-password")


def write_batches(workdir: Path, prefix: str, batches: list[list[dict]]) -> list[Path]:
    paths = []
    for i, docs in enumerate(batches):
        p = workdir / f"{prefix}-{i:04d}.yaml"
        p.write_text("".join("---\n" + json.dumps(d) + "\n" for d in docs))
        paths.append(p)
    return paths


def kubectl_timed(kube: KubeEnv, *args) -> float:
    kube.kubectl(*args, timeout=600)
    return time.monotonic()


def start_watches(kube: KubeEnv, ns: str, rec: Recorder, ds: bool) -> list[Watch]:
    ws = [Watch(kube, JOB_PATH.format(ns=ns), rec.on_job)]
    if ds:
        ws.append(Watch(kube, DS_PATH.format(ns=ns), rec.on_ds))
    for w in ws:
        w.start()
        w.ready.wait(30)
        if w.error:
            raise RuntimeError(f"watch {w.path}: {w.error}")
    return ws


def operator_run(kube: KubeEnv, rep: int, workdir: Path) -> dict:
    ns = f"bench-op-{rep}"
    setup_namespace(kube, ns, rbac=True)
    op = Operator(kube, ns, workdir / f"operator-{rep}.log")
    rec = Recorder()
    rec.want = COUNT
    watches = start_watches(kube, ns, rec, ds=True)
    names = [f"bench-{rep}-{i:05d}" for i in range(COUNT)]
    ds_files = write_batches(workdir, f"ds-{rep}", [[import_ds(n) for n in names[i:i + BATCH]]
                                                     for i in range(0, COUNT, BATCH)])
    st_files = write_batches(workdir, f"st-{rep}", [[{
        "apiVersion": "xlscsde.nhs.uk/v1", "kind": "AnalyticsWorkspaceDataSource",
        "metadata": {"name": n}, "status": {"dataState": "READY"}} for n in names[i:i + BATCH]]
        for i in range(0, COUNT, BATCH)])
    cpu0 = proc_stat(op.proc.pid)["cpu_s"]
    t0 = time.monotonic()
    applied: dict[str, float] = {}   # name -> when the kubectl apply creating it returned
    readied: dict[str, float] = {}   # name -> when the status apply making it READY returned
    for b, (dsf, stf) in enumerate(zip(ds_files, st_files)):
        t = kubectl_timed(kube, "apply", "-n", ns, "-f", str(dsf))
        for n in names[b * BATCH:(b + 1) * BATCH]:
            applied[n] = t
        t = kubectl_timed(kube, "apply", "-n", ns, "--server-side", "--subresource=status",
                          "--field-manager=bench", "-f", str(stf))
        for n in names[b * BATCH:(b + 1) * BATCH]:
            readied[n] = t
    t_applied = time.monotonic() - t0
    if not rec.all_jobs.wait(TIMEOUT):
        raise RuntimeError(f"only {len(rec.job_added)} of {COUNT} Jobs after {TIMEOUT} s; see {op.log_path}")
    with rec.lock:
        t_last = max(rec.job_added.values())
        lat_ready, lat_added, lat_client_ready, lat_client_create = [], [], [], []
        for job, uid in rec.job_owner.items():
            name = rec.uid_name.get(uid)
            tj = rec.job_added[job]
            if name in rec.ds_ready:
                lat_ready.append(tj - rec.ds_ready[name])
            if name in rec.ds_added:
                lat_added.append(tj - rec.ds_added[name])
            if name in readied:
                lat_client_ready.append(tj - readied[name])
                lat_client_create.append(tj - applied[name])
    stat = proc_stat(op.proc.pid)
    res = {
        "total_s": t_last - t0, "kubectl_s": t_applied, "jobs": len(rec.job_added),
        "ready_to_job": summary(lat_ready), "added_to_job": summary(lat_added),
        "status_apply_return_to_job": summary(lat_client_ready),
        "create_apply_return_to_job": summary(lat_client_create),
        "operator_cpu_s": stat["cpu_s"] - cpu0, "operator_rss_kb": stat["VmRSS"], "operator_hwm_kb": stat["VmHWM"],
        "reconciles": op.metric("airlock_reconcile_total"), "errors": op.metric("airlock_reconcile_errors_total"),
        "kube_requests": {k.split('"')[1]: v for k, v in op.metrics().items()
                          if k.startswith("airlock_kube_requests_total{")},
    }
    for w in watches:
        w.close()
    res["operator_exit"] = op.stop()
    res["children"] = export_children(kube, ns)
    return res


def summary(v: list[float]) -> dict:
    if not v:
        return {"n": 0}
    return {"n": len(v), "p50_ms": pct(v, 50) * 1000, "p99_ms": pct(v, 99) * 1000,
            "max_ms": max(v) * 1000, "min_ms": min(v) * 1000}


def export_children(kube: KubeEnv, ns: str) -> list[list[dict]]:
    """The operator's claim, Secrets and Job per datasource (in datasource
    order), stripped of what the server sets, for the baseline to apply."""
    items = kube.kubectl_json("get", "pvc,secret,job,awdb", "-n", ns)["items"]
    by_owner: dict[str, list[dict]] = {}
    order = {"PersistentVolumeClaim": 0, "Secret": 1, "Job": 2, "AnalyticsWorkspaceDataBinding": 3}
    for it in items:
        md = it["metadata"]
        owners = [r["uid"] for r in md.get("ownerReferences", [])
                  if r.get("kind") == "AnalyticsWorkspaceDataSource"]
        if not owners:
            continue
        clean = {"apiVersion": it["apiVersion"], "kind": it["kind"],
                 "metadata": {k: md[k] for k in ("name", "labels", "annotations") if k in md}}
        clean["metadata"].get("annotations", {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
        if it["kind"] == "AnalyticsWorkspaceDataBinding":
            clean["metadata"].pop("annotations", None)
        for k in ("spec", "data", "stringData", "type"):
            if k in it:
                clean[k] = json.loads(json.dumps(it[k]))
        if it["kind"] == "Job":
            spec = clean["spec"]
            spec.pop("selector", None)
            tl = spec["template"].setdefault("metadata", {}).get("labels", {})
            for k in ("controller-uid", "job-name", "batch.kubernetes.io/controller-uid",
                      "batch.kubernetes.io/job-name"):
                tl.pop(k, None)
                clean["metadata"].get("labels", {}).pop(k, None)
        if it["kind"] == "PersistentVolumeClaim":
            clean["spec"].pop("volumeName", None)
        by_owner.setdefault(owners[0], []).append(clean)
    groups = list(by_owner.values())
    for g in groups:
        g.sort(key=lambda o: order[o["kind"]])
    groups.sort(key=lambda g: next(o["metadata"]["name"] for o in g if o["kind"] == "Job"))
    return groups


def baseline_run(kube: KubeEnv, rep: int, workdir: Path, children: list[list[dict]], tag: str = "bl") -> dict:
    ns = f"bench-{tag}-{rep}"
    setup_namespace(kube, ns, rbac=False)
    rec = Recorder()
    rec.want = len(children)
    watches = start_watches(kube, ns, rec, ds=False)
    files = write_batches(workdir, f"{tag}-{rep}", [[o for g in children[i:i + BATCH] for o in g]
                                                  for i in range(0, len(children), BATCH)])
    t0 = time.monotonic()
    for f in files:
        kubectl_timed(kube, "apply", "-n", ns, "-f", str(f))
    t_applied = time.monotonic() - t0
    if not rec.all_jobs.wait(TIMEOUT):
        raise RuntimeError(f"baseline: only {len(rec.job_added)} Jobs")
    for w in watches:
        w.close()
    return {"total_s": max(rec.job_added.values()) - t0, "kubectl_s": t_applied,
            "jobs": len(rec.job_added), "objects": sum(len(g) for g in children)}


def floor_run(kube: KubeEnv, rep: int, workdir: Path) -> dict:
    """The driver's own share of the operator run: the same two kubectl
    applies per batch (create, then status READY) into a namespace where no
    operator runs. The operator run cannot end before its applies do."""
    ns = f"bench-fl-{rep}"
    setup_namespace(kube, ns, rbac=False)
    names = [f"floor-{rep}-{i:05d}" for i in range(COUNT)]
    ds_files = write_batches(workdir, f"fds-{rep}", [[import_ds(n) for n in names[i:i + BATCH]]
                                                      for i in range(0, COUNT, BATCH)])
    st_files = write_batches(workdir, f"fst-{rep}", [[{
        "apiVersion": "xlscsde.nhs.uk/v1", "kind": "AnalyticsWorkspaceDataSource",
        "metadata": {"name": n}, "status": {"dataState": "READY"}} for n in names[i:i + BATCH]]
        for i in range(0, COUNT, BATCH)])
    t0 = time.monotonic()
    for dsf, stf in zip(ds_files, st_files):
        kubectl_timed(kube, "apply", "-n", ns, "-f", str(dsf))
        kubectl_timed(kube, "apply", "-n", ns, "--server-side", "--subresource=status",
                      "--field-manager=bench", "-f", str(stf))
    return {"kubectl_s": time.monotonic() - t0}


def rss_run(kube: KubeEnv, workdir: Path) -> dict:
    ns = "bench-rss"
    setup_namespace(kube, ns, rbac=True)
    op = Operator(kube, ns, workdir / "operator-rss.log")
    time.sleep(2)
    idle = proc_stat(op.proc.pid)
    names = [f"rss-{i:05d}" for i in range(RSS_COUNT)]
    files = write_batches(workdir, "rss", [[import_ds(n) for n in names[i:i + RSS_BATCH]]
                                          for i in range(0, RSS_COUNT, RSS_BATCH)])
    t0 = time.monotonic()
    for f in files:
        kube.kubectl("create", "-n", ns, "-f", str(f), timeout=900)
    t_create = time.monotonic() - t0
    n = len(kube.kubectl("get", "awds", "-n", ns, "-o", "name", timeout=300).stdout.split())
    # Settle: queue empty and RSS unchanged over RSS_SETTLE seconds.
    samples = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        time.sleep(RSS_SETTLE / 4)
        samples.append(proc_stat(op.proc.pid)["VmRSS"])
        if (len(samples) >= 4 and op.metric("airlock_workqueue_depth") == 0
                and max(samples[-4:]) - min(samples[-4:]) <= 64):
            break
    st = proc_stat(op.proc.pid)
    m = op.metrics()
    res = {"datasources": n, "create_s": t_create, "idle_rss_kb": idle["VmRSS"], "rss_kb": st["VmRSS"],
           "hwm_kb": st["VmHWM"], "rss_anon_kb": st.get("RssAnon"), "rss_file_kb": st.get("RssFile"),
           "threads": st.get("Threads"), "rss_samples_kb": samples,
           "reconciles": m.get("airlock_reconcile_total"), "queue_depth": m.get("airlock_workqueue_depth")}
    res["operator_exit"] = op.stop()
    return res


def med(values):
    return statistics.median(values) if values else float("nan")


def main() -> int:
    if not os.access(BIN, os.X_OK):
        log(f"{BIN} missing: run `make` (or set AIRLOCK_BIN)")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="airlock-bench-kube-"))
    kube = KubeEnv(find_tools(), users={"operator": OPERATOR})
    log(f"starting etcd + kube-apiserver (files in {kube.root}; batch files and logs in {workdir})")
    kube.start()
    results = {"count": COUNT, "batch": BATCH, "workers": WORKERS, "reps": [], "rss": None}
    try:
        kube.apply_crds(REPO / "deploy" / "crds")
        kube.kubectl("create", "namespace", "airlock")
        for rep in range(1, REPS + 1):
            log(f"rep {rep}: operator, {COUNT} datasources in batches of {BATCH}")
            o = operator_run(kube, rep, workdir)
            children = o.pop("children")
            log(f"rep {rep}: operator all {o['jobs']} Jobs in {o['total_s']:.2f} s; "
                f"READY->Job p50 {o['ready_to_job'].get('p50_ms', 0):.0f} ms "
                f"p99 {o['ready_to_job'].get('p99_ms', 0):.0f} ms")
            log(f"rep {rep}: baseline, {len(children)} datasources' children (claim, 2 Secrets, Job, binding)")
            b = baseline_run(kube, rep, workdir, children)
            log(f"rep {rep}: baseline all {b['jobs']} Jobs in {b['total_s']:.2f} s ({b['objects']} objects)")
            seed_children = [[o for o in g if o["kind"] != "AnalyticsWorkspaceDataBinding"] for g in children]
            bs = baseline_run(kube, rep, workdir, seed_children, tag="bs")
            log(f"rep {rep}: baseline without the bindings: all {bs['jobs']} Jobs in {bs['total_s']:.2f} s "
                f"({bs['objects']} objects)")
            f = floor_run(kube, rep, workdir)
            log(f"rep {rep}: floor, the same datasource applies with no operator: {f['kubectl_s']:.2f} s")
            results["reps"].append({"operator": o, "baseline": b, "baseline_no_binding": bs, "floor": f,
                                    "ratio": o["total_s"] / b["total_s"],
                                    "ratio_no_binding": o["total_s"] / bs["total_s"],
                                    "floor_ratio": f["kubectl_s"] / b["total_s"]})
            OUT.write_text(json.dumps(results, indent=2) + "\n")
        if RSS_COUNT > 0:
            log(f"RSS: {RSS_COUNT} datasources with no work, batches of {RSS_BATCH}")
            results["rss"] = rss_run(kube, workdir)
            log(f"RSS: {results['rss']['rss_kb']} kB VmRSS with {results['rss']['datasources']} datasources")
    finally:
        OUT.write_text(json.dumps(results, indent=2) + "\n")
        kube.stop()
    reps = results["reps"]
    if reps:
        op_total = med([r["operator"]["total_s"] for r in reps])
        bl_total = med([r["baseline"]["total_s"] for r in reps])
        print(f"{COUNT} Import datasources, batches of {BATCH}, {WORKERS} workers, {len(reps)} reps (medians)")
        print(f"operator: all Jobs exist after {op_total:.2f} s")
        print(f"baseline (all children): all Jobs exist after {bl_total:.2f} s")
        print(f"baseline without the bindings: all Jobs exist after "
              f"{med([r['baseline_no_binding']['total_s'] for r in reps]):.2f} s")
        print(f"ratio (median of per-rep ratios): {med([r['ratio'] for r in reps]):.2f}x; "
              f"against the baseline without bindings {med([r['ratio_no_binding'] for r in reps]):.2f}x")
        print(f"floor: the datasource applies alone (no operator) take {med([r['floor']['kubectl_s'] for r in reps]):.2f} s"
              f" = {med([r['floor_ratio'] for r in reps]):.2f}x the baseline")
        print(f"operator run's own kubectl applies: {med([r['operator']['kubectl_s'] for r in reps]):.2f} s")
        for key in ("ready_to_job", "added_to_job", "status_apply_return_to_job", "create_apply_return_to_job"):
            print(f"{key}: p50 {med([r['operator'][key]['p50_ms'] for r in reps]):.0f} ms, "
                  f"p99 {med([r['operator'][key]['p99_ms'] for r in reps]):.0f} ms")
        verbs = sorted({v for r in reps for v in r["operator"]["kube_requests"]})
        print("operator requests per datasource: " + ", ".join(
            f"{v} {med([r['operator']['kube_requests'].get(v, 0) for r in reps]) / COUNT:.2f}" for v in verbs))
        print(f"operator CPU {med([r['operator']['operator_cpu_s'] for r in reps]):.2f} s, "
              f"VmHWM {med([r['operator']['operator_hwm_kb'] for r in reps]):.0f} kB")
    if results["rss"]:
        r = results["rss"]
        print(f"RSS with {r['datasources']} datasources: {r['rss_kb']} kB (idle {r['idle_rss_kb']} kB, "
              f"HWM {r['hwm_kb']} kB)")
    print(f"JSON: {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
