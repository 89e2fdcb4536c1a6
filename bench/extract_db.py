#!/usr/bin/env python3
"""Benchmark of the runners against real databases (issue 5): one table of
ROWS rows (default 5,000,000) with mixed column types, extracted in the same
run, alternating, REPS times (median), by

  PostgreSQL:  the native runner (`airlock run-job`, CSV), the dlt runner
               (pyarrow backend; CSV and Parquet) and the practical limit
               `psql -c "\\copy (SELECT * FROM t) TO FILE csv header"`;
  MariaDB:     the native runner, the dlt runner (CSV and Parquet) and
               `mariadb --batch --quick -e "SELECT * FROM t" > FILE`.

For each: wall time, rows/s and peak RSS (ru_maxrss of the process and the
children it waited for, from wait4). Not a timed test: it prints figures and
writes JSON. See docs/benchmarks.md, "Runners against PostgreSQL and MariaDB".

    make && bench/extract_db.sh
    ROWS=1000000 REPS=1 DBS=pg DLT=0 bench/extract_db.sh

Environment: ROWS, REPS (3), DBS (pg,mariadb), DLT (1: include the dlt
runner), AIRLOCK_BIN (bin/airlock), OUT (/tmp/extract_db.json).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from mariadbserver import MariaDBServer  # noqa: E402
from pgserver import PgServer  # noqa: E402

ROWS = int(os.environ.get("ROWS", "5000000"))
REPS = int(os.environ.get("REPS", "3"))
DBS = [d for d in os.environ.get("DBS", "pg,mariadb").split(",") if d]
DLT = os.environ.get("DLT", "1") == "1"
BIN = Path(os.environ.get("AIRLOCK_BIN", REPO / "bin" / "airlock")).resolve()
OUT = Path(os.environ.get("OUT", "/tmp/extract_db.json"))
DLT_RUNNER = REPO / "runners" / "dlt" / "airlock-dlt-runner"
USER, PASSWORD = "bench", "bench-password-123"
TIME = "/usr/bin/time"  # GNU time (Debian package time)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure(cmd, env=None, stdout=None):
    """Runs cmd under GNU time; returns (seconds, peak RSS kB) or raises with
    its stderr. (A child's own ru_maxrss would count the Python it was forked
    from; GNU time's child is forked from the small `time` and then exec'd.)"""
    errf = tempfile.TemporaryFile()
    with tempfile.NamedTemporaryFile() as rss:
        t0 = time.monotonic()
        p = subprocess.run([TIME, "-f", "%M", "-o", rss.name, *cmd], env=env, stdin=subprocess.DEVNULL,
                           stdout=stdout or subprocess.DEVNULL, stderr=errf)
        secs = time.monotonic() - t0
        if p.returncode != 0:
            errf.seek(0)
            raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {errf.read().decode(errors='replace')[-2000:]}")
        return secs, int(Path(rss.name).read_text().split()[-1])


def datasource(conn_type, url):
    return {"apiVersion": "xlscsde.nhs.uk/v1", "kind": "AnalyticsWorkspaceDataSource",
            "metadata": {"name": "bench"},
            "spec": {"type": "Import", "displayName": "Benchmark",
                     "connections": [{"type": conn_type, "name": "src", "url": url,
                                      "credentials": {"userKey": "User", "passwordKey": "Password"}}],
                     "objects": [{"table": {"name": "t", "connection": "src"}}]}}


def runner_env(work, fmt):
    env = dict(os.environ, AIRLOCK_DATASOURCE_FILE=str(work / "ds.json"), AIRLOCK_OUTPUT_DIR=str(work / "out"),
               AIRLOCK_CREDENTIALS_FILE=str(work / "creds.json"), AIRLOCK_OUTPUT_FORMAT=fmt, AIRLOCK_BIN=str(BIN))
    return env


def reset_out(work):
    shutil.rmtree(work / "out", ignore_errors=True)
    (work / "out").mkdir()


def setup_pg(work, servers):
    # The test helper's server (16 MB shared buffers; a sequential read is
    # served by the OS page cache either way; every tool reads the same).
    pg = PgServer().start()
    servers.append(pg)
    pg.create_role(USER, PASSWORD)
    pg.create_database("bench", owner=USER)
    log(f"PostgreSQL: loading {ROWS} rows ...")
    pg.sql(f"""CREATE TABLE t(id bigint PRIMARY KEY, score double precision, name text, note text,
                  visits integer, seen timestamptz, amount numeric(12,2), flag boolean);
               INSERT INTO t SELECT x, x * 0.37, 'patient_' || md5(x::text),
                  CASE WHEN x % 3 = 0 THEN NULL WHEN x % 3 = 1 THEN 'note, with "quotes" ' || x
                       ELSE 'plain note ' || x END,
                  x % 500, timestamptz '2024-01-01 00:00:00+00' + x * interval '1 second',
                  (x % 100000) / 100.0, x % 2 = 0
               FROM generate_series(1, {ROWS}) x;
               ALTER TABLE t OWNER TO {USER};""", db="bench", timeout=3600)
    pg.sql("VACUUM ANALYZE t", db="bench", timeout=3600)
    url = f"postgresql://127.0.0.1:{pg.port}/bench"
    peer_env = dict(os.environ, PGPASSWORD=PASSWORD)
    peer = lambda out: ([str(pg.bindir / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", USER, "-d", "bench",
                         "-X", "-q", "-c", f"\\copy (SELECT * FROM t) TO '{out}' csv header"], peer_env, None)
    return pg, datasource("postgresql", url), peer, "psql \\copy csv header"


def setup_mariadb(work, servers):
    srv = MariaDBServer(work / "mariadb").start()
    servers.append(srv)
    srv.sql("CREATE DATABASE bench")
    srv.create_user(USER, PASSWORD, "GRANT SELECT ON bench.* TO {user}")
    log(f"MariaDB: loading {ROWS} rows ...")
    srv.sql(f"""CREATE TABLE t(id bigint PRIMARY KEY, score double, name varchar(64), note text,
                  visits int, seen datetime(6), amount decimal(12,2), flag boolean);
               INSERT INTO t SELECT x, x * 0.37, CONCAT('patient_', MD5(x)),
                  CASE WHEN x % 3 = 0 THEN NULL WHEN x % 3 = 1 THEN CONCAT('note, with "quotes" ', x)
                       ELSE CONCAT('plain note ', x) END,
                  x % 500, TIMESTAMP '2024-01-01 00:00:00' + INTERVAL x SECOND, (x % 100000) / 100.0, x % 2 = 0
               FROM (SELECT seq AS x FROM seq_1_to_{ROWS}) c;""", database="bench", timeout=3600)
    url = f"mariadb://127.0.0.1:{srv.port}/bench"

    def peer(out):
        return (["/usr/bin/mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(srv.port), "-u", USER,
                 f"-p{PASSWORD}", "--batch", "--quick", "-e", "SELECT * FROM t", "bench"], None, out)
    return srv, datasource("mariadb", url), peer, "mariadb --batch --quick"


def bench_db(name, setup, work):
    work.mkdir(parents=True, exist_ok=True)
    servers = []
    try:
        server, ds, peer, peer_name = setup(work, servers)
        (work / "ds.json").write_text(json.dumps(ds))
        creds = work / "creds.json"
        creds.write_text(json.dumps({"User": USER, "Password": PASSWORD}))
        creds.chmod(0o600)
        tools = {"native csv": lambda: measure([str(BIN), "run-job", "--quiet"], env=runner_env(work, "csv"))}
        if DLT:
            tools["dlt csv"] = lambda: measure([str(DLT_RUNNER)], env=runner_env(work, "csv"))
            tools["dlt parquet"] = lambda: measure([str(DLT_RUNNER)], env=runner_env(work, "parquet"))

        def run_peer():
            target = work / "out" / "t.csv"
            cmd, env, _ = peer(target)
            if name == "mariadb":
                with open(target, "wb") as f:
                    return measure(cmd, env=env, stdout=f)
            return measure(cmd, env=env)
        tools[peer_name] = run_peer
        res = {k: [] for k in tools}
        order = list(tools)
        for rep in range(REPS):
            for k in (order if rep % 2 == 0 else list(reversed(order))):
                reset_out(work)
                secs, rss = tools[k]()
                files = sorted(p.name for p in (work / "out").iterdir())
                res[k].append({"seconds": secs, "rss_kb": rss, "files": files})
                log(f"{name} rep {rep + 1}: {k}: {secs:.2f} s, {ROWS / secs:,.0f} rows/s, peak RSS {rss} kB")
        summary = {}
        for k, runs in res.items():
            s = statistics.median(r["seconds"] for r in runs)
            summary[k] = {"seconds": s, "rows_per_s": ROWS / s,
                          "rss_kb": statistics.median(r["rss_kb"] for r in runs), "runs": runs}
        return {"peer": peer_name, "tools": summary}
    finally:
        for server in servers:  # started, even if its setup failed
            server.stop()
            if hasattr(server, "cleanup"):
                server.cleanup()


def main():
    if not os.access(TIME, os.X_OK):
        log(f"{TIME} missing: apt-get install time (scripts/bootstrap.sh test installs it)")
        return 2
    if not os.access(BIN, os.X_OK):
        log(f"{BIN} missing: run make (or set AIRLOCK_BIN)")
        return 2
    if DLT and not os.access(DLT_RUNNER, os.X_OK):
        log(f"{DLT_RUNNER} missing")
        return 2
    if DLT:
        log("dlt runner: preparing its Python environment (scripts/dlt-venv.sh) ...")
        subprocess.run([str(REPO / "scripts" / "dlt-venv.sh")], check=True, stdout=subprocess.DEVNULL)
    root = Path(tempfile.mkdtemp(prefix="airlock-bench-db-"))
    results = {"rows": ROWS, "reps": REPS, "dbs": {}}
    try:
        for db in DBS:
            setup = {"pg": setup_pg, "mariadb": setup_mariadb}[db]
            results["dbs"][db] = bench_db(db if db != "pg" else "postgresql", setup, root / db)
            OUT.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    for db, r in results["dbs"].items():
        peer = r["tools"][r["peer"]]
        print(f"{db}: {ROWS:,} rows, {REPS} reps, medians")
        for k, t in r["tools"].items():
            print(f"  {k:28s} {t['seconds']:8.2f} s {t['rows_per_s']:12,.0f} rows/s  peak RSS {t['rss_kb']:8,.0f} kB"
                  f"  time {t['seconds'] / peer['seconds']:.2f}x the peer")
        if "dlt csv" in r["tools"]:
            nat = r["tools"]["native csv"]["rows_per_s"]
            print(f"  native rows/s = {nat / r['tools']['dlt csv']['rows_per_s']:.1f}x dlt csv, "
                  f"{nat / r['tools']['dlt parquet']['rows_per_s']:.1f}x dlt parquet")
    print(f"JSON: {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
