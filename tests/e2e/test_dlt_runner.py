"""End-to-end: the dlt job runner (runners/dlt, `python -m airlock_dlt_runner`).

The runner's Python environment is made by scripts/dlt-venv.sh (a session
fixture: a few minutes the first time, cached under ~/.cache/airlock after);
the runner runs as a subprocess exactly as the embedded airlock runs it
(PYTHONPATH=runners/dlt, AIRLOCK_BIN naming the airlock binary that writes
the RO-Crate). Its output is compared byte for byte with the native runner's
(`airlock run-job`) for the same SQLite tables, and cell for cell with
PostgreSQL's own COPY output for a real server (pgserver.py) and with the
values a real MariaDB server (mariadbserver.py) holds.
"""
import base64
import csv
import hashlib
import io
import json
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import time
from pathlib import Path

import pytest
from rocrate.rocrate import ROCrate

from conftest import datasource_yaml, make_source_db
from mariadbserver import MariaDBServer
from pgserver import PgServer
# The native runner's https tests' TLS file server, and its fixture (`server`).
from test_source_https import PASSWORD as FILES_PASSWORD
from test_source_https import QUERY_SECRET
from test_source_https import job as files_job
from test_source_https import server  # noqa: F401 (a pytest fixture)

REPO = Path(__file__).resolve().parents[2]
AIRLOCK_BIN = os.path.abspath(os.environ.get("AIRLOCK_BIN", str(REPO / "bin" / "airlock")))
SECRET = "dlt-Secret-Passw0rd-9b41"
PG_PASSWORD = "pg-dlt-Secret-4c7e"
MARIADB_PASSWORD = "mdb-dlt-Secret-12ab"


@pytest.fixture(scope="session")
def dlt_python():
    """The runner's interpreter, from the repository's own script."""
    p = subprocess.run([str(REPO / "scripts" / "dlt-venv.sh")], capture_output=True, text=True, timeout=1800,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        pytest.fail(f"scripts/dlt-venv.sh failed ({p.returncode}): {p.stderr[-3000:]}")
    venv = Path(p.stdout.strip())
    py = venv / "bin" / "python"
    assert py.exists(), f"scripts/dlt-venv.sh printed {venv!s}, which has no bin/python"
    # Idempotent and quiet the second time: the path alone on stdout.
    again = subprocess.run([str(REPO / "scripts" / "dlt-venv.sh")], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.strip() == str(venv) and again.stderr == ""
    return py


def runner_env(tmp: Path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    env.update(PYTHONPATH=str(REPO / "runners" / "dlt"), AIRLOCK_BIN=AIRLOCK_BIN, TMPDIR=str(tmp))
    env.update(extra)
    return env


def run_dlt(py, tmp: Path, *args, env=None, timeout=300):
    tmpdir = tmp / "runner-tmp"
    tmpdir.mkdir(exist_ok=True)
    p = subprocess.run([str(py), "-m", "airlock_dlt_runner", *map(str, args)], capture_output=True, text=True,
                       env=env or runner_env(tmpdir), timeout=timeout, stdin=subprocess.DEVNULL, cwd=tmp)
    # dlt's directories live in a private temporary directory that goes at exit.
    assert list(tmpdir.iterdir()) == [], f"runner left {list(tmpdir.iterdir())} behind"
    return p


def run_native(*args):
    return subprocess.run([AIRLOCK_BIN, *map(str, args)], capture_output=True, text=True, timeout=300)


def graph(out: Path):
    return {e["@id"]: e for e in json.loads((out / "ro-crate-metadata.json").read_text())["@graph"]}


def assert_no_secret(p, out: Path, *secrets):
    texts = [p.stdout, p.stderr]
    if out.exists():
        texts += [f.read_text(errors="replace") for f in out.iterdir() if f.suffix in (".json", ".csv")]
    for s in secrets:
        for t in texts:
            assert s not in t


def awkward_sqlite(path: Path):
    """The native runner's awkward values, and random doubles of every shape."""
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE odd(id INTEGER, score REAL, name TEXT, note TEXT, img BLOB)")
    rows = [
        (1, 0.5, "plain", "x", b"\x00\xff"),
        (-42, 1e20, 'a,b "quoted"', None, None),
        (2**63 - 1, 0.1 + 0.2, "line1\r\nline2\nline3", "", b""),
        (None, None, "Zoë café €", None, b"abc"),
        (7, -0.00012, "tab\there", "trailing space ", b"\x01" * 1000),
        (8, float("inf"), "", "   ", None),
        (9, -0.0, "🎉", ",", None),
        (10, 1e15, '"', "\r", None),
    ]
    rnd = random.Random(7)
    for i in range(2000):
        v = struct.unpack("d", struct.pack("Q", rnd.getrandbits(64)))[0]
        if v != v:
            v = 1.0
        rows.append((100 + i, v if i % 2 else rnd.uniform(-1e6, 1e6), f"r{i}", None, None))
    con.executemany("INSERT INTO odd VALUES (?,?,?,?,?)", rows)
    con.execute("CREATE TABLE empty(a INTEGER, b TEXT)")
    con.commit()
    con.close()


@pytest.fixture()
def sqlite_source(tmp_path):
    db = make_source_db(tmp_path / "gm.db")
    awkward_sqlite(db)
    dsf = tmp_path / "ds.yaml"
    dsf.write_text(datasource_yaml("example-data-source-1", db, tables=("patients", "attendances", "odd", "empty"),
                                   extra_conn="    credentials:\n      userKey: GmUser\n      passwordKey: GmPassword\n"))
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"GmUser": "bob", "GmPassword": SECRET}))
    creds.chmod(0o600)
    return tmp_path, db, dsf, creds


def test_sqlite_csv_equals_native_runner(dlt_python, sqlite_source):
    tmp, db, dsf, creds = sqlite_source
    out, native = tmp / "out", tmp / "native"
    # Inputs from the environment, as the operator's job gives them.
    env = runner_env(tmp / "runner-tmp", AIRLOCK_DATASOURCE_FILE=str(dsf), AIRLOCK_OUTPUT_DIR=str(out),
                     AIRLOCK_CREDENTIALS_FILE=str(creds))
    (tmp / "runner-tmp").mkdir()
    p = run_dlt(dlt_python, tmp, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    assert "patients: 100 rows, 4 columns written to patients.csv" in p.stderr
    assert "odd: 2008 rows, 5 columns written to odd.csv" in p.stderr
    r = run_native("run-job", "--datasource", dsf, "--output", native, "--credentials", creds)
    assert r.returncode == 0, r.stderr

    files = sorted(f.name for f in out.iterdir())
    assert files == ["attendances.csv", "empty.csv", "odd.csv", "patients.csv", "ro-crate-metadata.json"]
    for name in files[:-1]:
        assert (out / name).read_bytes() == (native / name).read_bytes(), f"{name} differs from the native runner's"
    assert (out / "empty.csv").read_bytes() == b"a,b\r\n"
    assert_no_secret(p, out, SECRET)

    g, gn = graph(out), graph(native)
    for name in files[:-1]:
        for key in ("airlock:rowCount", "airlock:columns", "airlock:columnTypes", "sha256", "contentSize",
                    "encodingFormat"):
            assert g[name][key] == gn[name][key], (name, key)
    assert g["odd.csv"]["airlock:columnTypes"] == ["INTEGER", "REAL", "TEXT", "TEXT", "BLOB"]
    assert g["#runner"]["name"] == "airlock-dlt-runner"
    assert "dlt 1." in g["#runner"]["version"]
    assert g["#source"]["name"] == "sqlite database gm.db"
    assert g["#source"]["airlock:tables"] == ["patients", "attendances", "odd", "empty"]
    assert str(tmp) not in (out / "ro-crate-metadata.json").read_text()

    crate = ROCrate(str(out))
    assert crate.name == "NWSDE Data Engineering Team Sample Dataset - GM Attendances"
    assert sorted(e.id for e in crate.data_entities) == files[:-1]
    for e in crate.data_entities:
        data = (out / e.id).read_bytes()
        assert e["sha256"] == hashlib.sha256(data).hexdigest()
        assert e["contentSize"] == str(len(data))
    actions = [e for e in crate.contextual_entities if e.type == "CreateAction"]
    assert len(actions) == 1 and actions[0]["actionStatus"] == "CompletedActionStatus"
    assert actions[0]["startTime"] <= actions[0]["endTime"]
    assert crate.dereference("#runner")["name"] == "airlock-dlt-runner"


def dump_parquet(py, path: Path):
    code = ("import json, sys, base64, pyarrow.parquet as pq\n"
            "t = pq.read_table(sys.argv[1])\n"
            "enc = lambda v: {'b64': base64.b64encode(v).decode()} if isinstance(v, bytes) else v\n"
            "print(json.dumps({'schema': [[f.name, str(f.type)] for f in t.schema],\n"
            "                  'rows': [[enc(v) for v in r.values()] for r in t.to_pylist()]}, default=str))\n")
    p = subprocess.run([str(py), "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_sqlite_parquet(dlt_python, sqlite_source):
    tmp, db, dsf, creds = sqlite_source
    out = tmp / "out"
    env = runner_env(tmp / "runner-tmp", AIRLOCK_OUTPUT_FORMAT="parquet")
    (tmp / "runner-tmp").mkdir()
    p = run_dlt(dlt_python, tmp, "--datasource", dsf, "--output", out, "--credentials", creds, env=env)
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in out.iterdir()) == ["attendances.parquet", "empty.parquet", "odd.parquet",
                                                      "patients.parquet", "ro-crate-metadata.json"]
    con = sqlite3.connect(db)
    for table in ("patients", "odd", "empty"):
        got = dump_parquet(dlt_python, out / f"{table}.parquet")
        cur = con.execute(f'SELECT * FROM "{table}"')
        names = [d[0] for d in cur.description]
        want = [[{"b64": base64.b64encode(v).decode()} if isinstance(v, bytes) else v for v in row]
                for row in cur.fetchall()]
        assert [n for n, _ in got["schema"]] == names
        assert got["rows"] == want, table
    assert dump_parquet(dlt_python, out / "odd.parquet")["schema"] == [
        ["id", "int64"], ["score", "double"], ["name", "string"], ["note", "string"], ["img", "binary"]]
    g = graph(out)
    assert g["odd.parquet"]["encodingFormat"] == "application/vnd.apache.parquet"
    assert g["odd.parquet"]["airlock:rowCount"] == 2008
    assert g["empty.parquet"]["airlock:rowCount"] == 0
    assert g["empty.parquet"]["airlock:columns"] == ["a", "b"]
    crate = ROCrate(str(out))
    assert crate.dereference("#runner")["name"] == "airlock-dlt-runner"
    assert_no_secret(p, out, SECRET)


def test_csv_gz_and_help(dlt_python, sqlite_source):
    import gzip

    tmp, db, dsf, creds = sqlite_source
    out, native = tmp / "out", tmp / "native"
    p = run_dlt(dlt_python, tmp, "--datasource", dsf, "--output", out, "--format=csv.gz", "--quiet")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # --quiet: no progress lines
    r = run_native("run-job", "--datasource", dsf, "--output", native, "-q")
    assert r.returncode == 0, r.stderr
    assert gzip.decompress((out / "odd.csv.gz").read_bytes()) == (native / "odd.csv").read_bytes()
    h = run_dlt(dlt_python, tmp, "--help")
    assert h.returncode == 0 and "AIRLOCK_DATASOURCE_FILE" in h.stdout and "parquet" in h.stdout


def test_faults(dlt_python, sqlite_source):
    tmp, db, dsf, creds = sqlite_source
    out = tmp / "out"
    ds = {"apiVersion": "xlscsde.nhs.uk/v1", "kind": "AnalyticsWorkspaceDataSource",
          "metadata": {"name": "faulty"},
          "spec": {"connections": [{"type": "sqlite", "name": "gm", "url": f"sqlite://{db}",
                                    "credentials": {"passwordKey": "GmPassword"}}],
                   "objects": [{"table": {"name": "patients", "connection": "gm"}},
                               {"table": {"name": "nope", "connection": "gm"}}]}}
    f = tmp / "bad.json"

    def attempt(doc, *args, cred=creds):
        f.write_text(json.dumps(doc))
        extra = ("--credentials", cred) if cred else ()
        p = run_dlt(dlt_python, tmp, "--datasource", f, "--output", out, *extra, *args)
        assert_no_secret(p, out, SECRET)
        return p

    # A missing table: named with the tables present, nothing written.
    p = attempt(ds)
    assert p.returncode == 1
    assert "table 'nope' not found in gm.db; tables present: attendances, empty, odd, patients" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not out.exists()

    # An unknown connection type, its url (with a password) never echoed.
    bad = json.loads(json.dumps(ds))
    bad["spec"]["connections"][0].update(type="oracle", url=f"oracle://u:{SECRET}@db.example/x")
    p = attempt(bad)
    assert p.returncode == 1 and "connection type 'oracle' is not supported by airlock-dlt-runner" in p.stderr
    assert not out.exists()
    # An https url carrying a password is refused without echoing it, before any request.
    bad["spec"]["connections"][0].update(type="https", url=f"https://u:{SECRET}@files.example/data")
    p = attempt(bad)
    assert p.returncode == 1 and "must not contain a user name or password" in p.stderr, p.stderr
    assert not out.exists()
    # A database url carrying a password is refused without echoing it.
    bad["spec"]["connections"][0].update(type="postgresql", url=f"postgresql://u:{SECRET}@127.0.0.1:1/gm")
    p = attempt(bad)
    assert p.returncode == 1 and "must not carry a password" in p.stderr
    assert not out.exists()

    # A credentials file others can read: refused before anything else.
    creds.chmod(0o644)
    p = attempt(ds)
    assert p.returncode == 1 and f"has mode 0644" in p.stderr and f"chmod 600 {creds}" in p.stderr
    creds.chmod(0o600)
    # A key the credentials lack.
    other = tmp / "other.json"
    other.write_text(json.dumps({"Else": SECRET}))
    other.chmod(0o600)
    bad = json.loads(json.dumps(ds))
    bad["spec"]["connections"][0].update(type="postgresql", url="postgresql://127.0.0.1:1/gm")
    p = attempt(bad, cred=other)
    assert p.returncode == 1
    assert "credentials.passwordKey 'GmPassword' is not among the job's credentials" in p.stderr

    # Usage errors: exit 2.
    assert run_dlt(dlt_python, tmp, "--output", out).returncode == 2
    assert run_dlt(dlt_python, tmp, "--datasource", f, "--output", out, "--format", "xlsx").returncode == 2
    assert run_dlt(dlt_python, tmp, "--bogus").returncode == 2
    assert not out.exists()

    # A failure after a finished table: the table stays, no .part, and the
    # crate records the failure. (dlt types a column by its declared type, so
    # text in an INTEGER column cannot be converted; the native runner writes
    # SQLite's values as they are stored.)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE bad(a INTEGER, b TEXT)")
    con.executemany("INSERT INTO bad VALUES (?,?)", [(1, "x"), ("not a number", "y")])
    con.commit()
    con.close()
    ds["spec"]["objects"][1]["table"]["name"] = "bad"
    p = attempt(ds)
    assert p.returncode == 1
    assert "connection 'gm': table 'bad':" in p.stderr and "not a number" in p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["patients.csv", "ro-crate-metadata.json"]
    act = [e for e in graph(out).values() if e.get("@type") == "CreateAction"][0]
    assert act["actionStatus"] == "FailedActionStatus" and "table 'bad'" in act["error"]
    assert graph(out)["#runner"]["name"] == "airlock-dlt-runner"
    ROCrate(str(out))  # still a valid crate
    # Fixed, the retry succeeds.
    con = sqlite3.connect(db)
    con.execute("DELETE FROM bad WHERE a = 'not a number'")
    con.commit()
    con.close()
    p = attempt(ds)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["bad.csv", "patients.csv", "ro-crate-metadata.json"]


def test_sigterm_mid_table(dlt_python, tmp_path):
    """A killed job: the table being written goes, the crate says Failed."""
    db = tmp_path / "big.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE small(a INTEGER)")
    con.execute("INSERT INTO small VALUES (1)")
    con.execute("CREATE TABLE big(id INTEGER, t TEXT, r REAL)")
    con.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
                "INSERT INTO big SELECT i, 'row ' || i, i * 0.25 FROM n")
    con.commit()
    con.close()
    dsf = tmp_path / "ds.json"
    dsf.write_text(json.dumps({"spec": {"connections": [{"type": "sqlite", "name": "s", "url": f"sqlite://{db}"}],
                                        "objects": [{"table": {"name": "small", "connection": "s"}},
                                                    {"table": {"name": "big", "connection": "s"}}]}}))
    out = tmp_path / "out"
    rt = tmp_path / "runner-tmp"
    rt.mkdir()
    proc = subprocess.Popen([str(dlt_python), "-m", "airlock_dlt_runner", "--datasource", str(dsf), "--output",
                             str(out)], env=runner_env(rt), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "big.csv.part").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "big.csv.part never appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert "stopped by signal SIGTERM" in err
    assert sorted(x.name for x in out.iterdir()) == ["ro-crate-metadata.json", "small.csv"]
    act = [e for e in graph(out).values() if e.get("@type") == "CreateAction"][0]
    assert act["actionStatus"] == "FailedActionStatus" and "SIGTERM" in act["error"]
    assert list(rt.iterdir()) == []


def test_rocrate_build_action_and_extras(tmp_path):
    """The `airlock rocrate build` options the dlt runner relies on."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "t.csv").write_bytes(b"a,b\r\n1,2\r\n")
    action = {"runnerName": "some-runner", "runnerVersion": "9 (x 1)", "startTime": "2024-01-02T03:04:05.000Z",
              "endTime": "2024-01-02T03:04:06.000Z", "succeeded": False, "error": "it broke",
              "sourceName": "src", "sourceDescription": "a source", "sourceExtra": {"airlock:tables": ["t"]}}
    extras = {"t.csv": {"rowCount": 1, "columns": ["a", "b"], "columnTypes": ["INT", "TEXT"]}}
    af, ef = tmp_path / "action.json", tmp_path / "extras.json"
    af.write_text(json.dumps(action))
    ef.write_text(json.dumps(extras))
    r = run_native("rocrate", "build", d, "--action", af, "--extras=" + str(ef))
    assert r.returncode == 0, r.stderr
    g = graph(d)
    assert g["#runner"] == {"@id": "#runner", "@type": "SoftwareApplication", "name": "some-runner",
                            "version": "9 (x 1)"}
    act = g["#collection-2024-01-02T03:04:05.000Z"]
    assert act["actionStatus"] == "FailedActionStatus" and act["error"] == "it broke"
    assert act["endTime"] == "2024-01-02T03:04:06.000Z"
    assert g["#source"]["airlock:tables"] == ["t"] and g["#source"]["description"] == "a source"
    assert g["t.csv"]["airlock:columnTypes"] == ["INT", "TEXT"]
    ROCrate(str(d))

    def refused(doc, which="action", needle=""):
        (af if which == "action" else ef).write_text(json.dumps(doc))
        r = run_native("rocrate", "build", d, "--action", af, "--extras", ef)
        assert r.returncode == 1 and needle in r.stderr, r.stderr

    refused({**action, "runner": "x"}, needle="unknown key 'runner'")
    refused({k: v for k, v in action.items() if k != "succeeded"}, needle="'succeeded' is required")
    refused({**action, "sourceExtra": {"@id": "#x"}}, needle="must not start with '@'")
    refused({**action, "sourceExtra": {"a": {"b": 1}}}, needle="sourceExtra 'a'")
    refused({**action, "startTime": 5}, needle="'startTime' must be a string")
    af.write_text(json.dumps(action))
    refused({"t.csv": {"rowCount": -1}}, "extras", "rowCount must be a non-negative integer")
    refused({"../t.csv": {}}, "extras", "must be a path relative")
    refused({"t.csv": {"columns": [1]}}, "extras", "columns[0] must be a string")
    refused({"t.csv": {"size": -1}}, "extras", "size must be a non-negative integer")
    refused({"t.csv": {"sha256": "AB" * 32}}, "extras", "sha256 must be 64 lowercase hex digits")
    # size and sha256 from the writer are used while the file has that size, else it is hashed.
    real = hashlib.sha256((d / "t.csv").read_bytes()).hexdigest()
    for size, want in ((10, "0" * 64), (11, real)):
        ef.write_text(json.dumps({"t.csv": {"size": size, "sha256": "0" * 64}}))
        r = run_native("rocrate", "build", d, "--action", af, "--extras", ef)
        assert r.returncode == 0, r.stderr
        assert graph(d)["t.csv"]["sha256"] == want
    assert run_native("rocrate", "build", d, "--action").returncode == 2


# -- real database servers -------------------------------------------------------

def strict_csv(data: bytes):
    """RFC 4180 records; None for an unquoted empty field (NULL), '' for ""."""
    text = data.decode("utf-8")
    rows, row, field, quoted, i = [], [], [], False, 0
    started = False
    while i < len(text):
        c = text[i]
        if quoted:
            if c == '"':
                if text[i + 1:i + 2] == '"':
                    field.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                field.append(c)
        elif c == '"':
            quoted, started = True, True
        elif c == ",":
            row.append("".join(field) if field or started else None)
            field, started = [], False
        elif c == "\r" and text[i + 1:i + 2] == "\n":
            row.append("".join(field) if field or started else None)
            rows.append(row)
            row, field, started = [], [], False
            i += 1
        else:
            assert c not in "\r\n", f"bare line end at {i}"
            field.append(c)
        i += 1
    assert not row and not field, "last record without CRLF"
    return rows


PG_FIXTURE = r"""
CREATE TABLE mixed (
  id int PRIMARY KEY, i2 smallint, i8 bigint, num numeric, num_s numeric(12,3), f4 real, f8 double precision,
  t text, vc varchar(40), ch char(4), d date, ts timestamp, tstz timestamptz, tm time, iv interval,
  b boolean, u uuid, by bytea, j json, jb jsonb, ia int[], ta text[]
);
INSERT INTO mixed VALUES
 (1, 32767, 9223372036854775807, 12345678901234567890.123456789, 1.5, 0.1, 0.30000000000000004,
  E'a,b "q"\nline2\r\nZoë € 🎉', 'vc', 'ab', '2024-03-01', '2024-03-01 10:00:00', '2024-03-01 10:00:00.123+01',
  '10:11:12', '1 day 02:00:00', true, '5f0c4b4e-8a0e-4c36-9a9e-2f8a6c1d2e3f', '\x00ff10', '{"a": [1, 2]}',
  '{"b": null, "a": 1}', '{1,2,3}', '{"x,y","q\"q",NULL}'),
 (2, NULL, NULL, NULL, NULL, NULL, 1e20, '', '', '', NULL, NULL, NULL, NULL, NULL, false, NULL, '', NULL, NULL,
  '{}', '{}'),
 (3, -1, -1, -0.5, -0.001, 'Infinity', '-Infinity', NULL, NULL, NULL, '1999-12-31', '1999-12-31 23:59:59.5',
  '1999-12-31 23:59:59.5+00', '00:00:00.25', '-3 hours', NULL, NULL, NULL, '[]', '[]', NULL, NULL);
INSERT INTO mixed (id, f8, t)
  SELECT 100 + g, (g * 1.0e-3 + g * g * 7.77)::float8 * (CASE WHEN g % 3 = 0 THEN 1e14 ELSE 1 END), 'r' || g
  FROM generate_series(1, 300) g;
CREATE TABLE empty_t (a int, b text);
CREATE SCHEMA other;
CREATE TABLE other.t2 (k int);
INSERT INTO other.t2 VALUES (7);
"""


@pytest.fixture(scope="module")
def pg():
    with PgServer() as server:
        server.create_role("reader", PG_PASSWORD)
        server.create_database("gm", owner="reader")
        server.sql(PG_FIXTURE, db="gm", user="reader")
        yield server


def pg_truth(pg, table):
    """What PostgreSQL's own COPY writes under the native runner's session
    settings (docs: source_postgresql.h), as records; NULL marked as None."""
    raw = pg.sql_bytes("SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, MDY'", "SET IntervalStyle = 'postgres'",
                       "SET extra_float_digits = 3",
                       f"COPY {table} TO STDOUT (FORMAT csv, HEADER, NULL '\\N')", db="gm")
    # psql ends records with LF; a quoted \N would be a value, and the fixture has none.
    recs = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    return [[None if v == "\\N" else v for v in r] for r in recs]


def test_postgresql_mixed_types(dlt_python, pg, tmp_path):
    ds = {"apiVersion": "xlscsde.nhs.uk/v1", "kind": "AnalyticsWorkspaceDataSource",
          "metadata": {"name": "pg-source"},
          "spec": {"displayName": "PG", "connections": [
              {"type": "postgresql", "name": "pg", "url": f"postgresql://127.0.0.1:{pg.port}/gm",
               "credentials": {"userKey": "PgUser", "passwordKey": "PgPassword"}}],
              "objects": [{"table": {"name": "mixed", "connection": "pg"}},
                          {"table": {"name": "empty_t", "connection": "pg"}},
                          {"table": {"name": "other.t2", "connection": "pg"}}]}}
    dsf = tmp_path / "ds.json"
    dsf.write_text(json.dumps(ds))
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"PgUser": "reader", "PgPassword": PG_PASSWORD}))
    creds.chmod(0o600)
    out = tmp_path / "out"
    p = run_dlt(dlt_python, tmp_path, "--datasource", dsf, "--output", out, "--credentials", creds)
    assert p.returncode == 0, p.stderr
    assert_no_secret(p, out, PG_PASSWORD)

    truth = pg_truth(pg, "mixed")
    got = strict_csv((out / "mixed.csv").read_bytes())
    header = truth[0]
    assert got[0] == header
    by_col = header.index("by")
    for want, have in zip(truth[1:], got[1:]):
        want = list(want)
        if want[by_col] is not None:  # \x hex -> base64, as the native runner writes bytea
            want[by_col] = base64.b64encode(bytes.fromhex(want[by_col][2:])).decode()
        for name, w, h in zip(header, want, have):
            assert h == w, f"row {want[0]} column {name}: dlt runner wrote {h!r}, PostgreSQL {w!r}"
    assert len(got) == len(truth) == 304
    assert (out / "empty_t.csv").read_bytes() == b"a,b\r\n"
    assert (out / "other.t2.csv").read_bytes() == b"k\r\n7\r\n"

    g = graph(out)
    assert g["mixed.csv"]["airlock:rowCount"] == 303
    types = dict(zip(g["mixed.csv"]["airlock:columns"], g["mixed.csv"]["airlock:columnTypes"]))
    assert types["tstz"] == "TIMESTAMP WITH TIME ZONE" and types["ia"] == "INTEGER[]" and types["jb"] == "JSONB"
    assert types["num_s"] == "NUMERIC(12, 3)"
    src = g["#source"]
    assert src["name"] == "postgresql database gm on 127.0.0.1"
    assert "one snapshot" in src["description"]
    assert src["airlock:serverVersions"][0].startswith("15")
    crate = ROCrate(str(out))
    assert crate.dereference("#runner")["name"] == "airlock-dlt-runner"

    # Parquet: typed columns.
    outp = tmp_path / "outp"
    p = run_dlt(dlt_python, tmp_path, "--datasource", dsf, "--output", outp, "--credentials", creds,
                "--format", "parquet")
    assert p.returncode == 0, p.stderr
    pq = dump_parquet(dlt_python, outp / "mixed.parquet")
    schema = dict(pq["schema"])
    assert schema["i8"] == "int64" and schema["f8"] == "double" and schema["b"] == "bool"
    assert schema["tstz"].startswith("timestamp[") and "UTC" in schema["tstz"]
    assert schema["num_s"] == "decimal128(12, 3)" and schema["by"] == "binary"
    row1 = dict(zip([n for n, _ in pq["schema"]], pq["rows"][0]))
    assert row1["t"] == 'a,b "q"\nline2\r\nZoë € 🎉' and row1["by"] == {"b64": base64.b64encode(b"\x00\xff\x10").decode()}
    assert row1["ia"] == "{1,2,3}" and row1["iv"] == "1 day 02:00:00"

    # Wrong password: exit 1, an actionable line, no secret, nothing written.
    creds.write_text(json.dumps({"PgUser": "reader", "PgPassword": "wrong-" + PG_PASSWORD}))
    outb = tmp_path / "outb"
    p = run_dlt(dlt_python, tmp_path, "--datasource", dsf, "--output", outb, "--credentials", creds)
    assert p.returncode == 1
    assert "connection 'pg': cannot connect to postgresql database gm on 127.0.0.1" in p.stderr
    assert "password authentication failed" in p.stderr
    assert "wrong-" + PG_PASSWORD not in p.stderr and PG_PASSWORD not in p.stderr
    assert not outb.exists()
    # A missing table lists what is there.
    creds.write_text(json.dumps({"PgUser": "reader", "PgPassword": PG_PASSWORD}))
    ds["spec"]["objects"].append({"table": {"name": "nope", "connection": "pg"}})
    dsf.write_text(json.dumps(ds))
    p = run_dlt(dlt_python, tmp_path, "--datasource", dsf, "--output", outb, "--credentials", creds)
    assert p.returncode == 1 and "table 'nope' not found in gm; tables present: empty_t, mixed" in p.stderr
    assert not outb.exists()


def test_mariadb(dlt_python, tmp_path):
    srv = MariaDBServer(tmp_path / "mariadb").start()
    try:
        srv.sql("CREATE DATABASE gm CHARACTER SET utf8mb4")
        srv.sql("CREATE TABLE gm.m (id INT PRIMARY KEY, n DECIMAL(10,2), f DOUBLE, t TEXT, b BLOB, "
                "d DATE, dt DATETIME(3), flag BOOLEAN)")
        srv.sql("INSERT INTO gm.m VALUES (1, 12.5, 0.1, 'a,b \"q\"\\nZoë', X'00FF', '2024-03-01', "
                "'2024-03-01 10:00:00.250', TRUE), (2, NULL, 1e20, '', '', NULL, NULL, FALSE), "
                "(3, -0.01, NULL, NULL, NULL, '1999-12-31', '1999-12-31 23:59:59', NULL)")
        srv.create_user("reader", MARIADB_PASSWORD, "GRANT SELECT ON gm.* TO {user}")
        ds = {"spec": {"connections": [{"type": "mariadb", "name": "mdb", "url": f"mariadb://127.0.0.1:{srv.port}/gm",
                                        "credentials": {"userKey": "U", "passwordKey": "P"}}],
                       "objects": [{"table": {"name": "m", "connection": "mdb"}}]}}
        dsf = tmp_path / "ds.json"
        dsf.write_text(json.dumps(ds))
        creds = tmp_path / "creds.json"
        creds.write_text(json.dumps({"U": "reader", "P": MARIADB_PASSWORD}))
        creds.chmod(0o600)
        out = tmp_path / "out"
        p = run_dlt(dlt_python, tmp_path, "--datasource", dsf, "--output", out, "--credentials", creds)
        assert p.returncode == 0, p.stderr
        assert_no_secret(p, out, MARIADB_PASSWORD)
        assert strict_csv((out / "m.csv").read_bytes()) == [
            ["id", "n", "f", "t", "b", "d", "dt", "flag"],
            ["1", "12.50", "0.1", 'a,b "q"\nZoë', base64.b64encode(b"\x00\xff").decode(), "2024-03-01",
             "2024-03-01 10:00:00.25", "1"],
            ["2", None, "1e+20", "", "", None, None, "0"],
            ["3", "-0.01", None, None, None, "1999-12-31", "1999-12-31 23:59:59", None],
        ]
        g = graph(out)
        assert g["m.csv"]["airlock:columnTypes"][1:3] == ["DECIMAL(10, 2)", "DOUBLE"]
        assert g["#source"]["name"] == f"mariadb database gm on 127.0.0.1"
        # Bad credentials: exit 1 and a line a data engineer can act on.
        creds.write_text(json.dumps({"U": "reader", "P": "wrong-" + MARIADB_PASSWORD}))
        p = run_dlt(dlt_python, tmp_path, "--datasource", dsf, "--output", tmp_path / "outb", "--credentials", creds)
        assert p.returncode == 1 and "Access denied" in p.stderr and MARIADB_PASSWORD not in p.stderr
    finally:
        srv.stop()


def test_embedded_import_with_the_dlt_runner(dlt_python, airlock_factory, tmp_path):
    """An Import that chooses spec.runner: dlt and spec.format: parquet, on an
    embedded airlock whose runners.dltCommand is the repository's wrapper:
    collected by the dlt runner as a job, checked, awaiting approval, with an
    RO-Crate that names the dlt runner."""
    from conftest import datasource_yaml, make_source_db
    wrapper = REPO / "runners" / "dlt" / "airlock-dlt-runner"
    airlock = airlock_factory(f"runners:\n  dltCommand: {wrapper}\n")
    airlock.login("admin")
    airlock.cli("workspace", "create", "ws-dlt", "--display-name", "dlt")
    airlock.add_user("eng", "data-engineer", workspaces=["ws-dlt"])
    db = make_source_db(tmp_path / "source.db")
    text = datasource_yaml("by-dlt", db).replace("  connections:", "  runner: dlt\n  format: parquet\n  connections:")
    (tmp_path / "ds.yaml").write_text(text)
    airlock.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", "ws-dlt", user="eng")
    ds = airlock.wait_stage("by-dlt", "AwaitingApproval", timeout=300)
    files = {f["path"] for f in ds["status"]["manifest"]["files"]}
    assert files == {"patients.parquet", "attendances.parquet", "ro-crate-metadata.json"}, ds["status"]
    stage = airlock.data / "staging" / f"ds-{ds['metadata']['uid']}"
    meta = json.loads((stage / "ro-crate-metadata.json").read_text())
    runner = [e for e in meta["@graph"] if e.get("@id") == "#runner"][0]
    assert runner["name"] == "airlock-dlt-runner", runner
    ent = {e["@id"]: e for e in meta["@graph"]}["patients.parquet"]
    assert ent["airlock:rowCount"] == 100


# -- https files (dlt's filesystem source) ------------------------------------------


def run_files(py, tmp: Path, server, dsf, cf, *args, ca=True):
    extra = {"AIRLOCK_CA_FILE": str(server.cert)} if ca else {}
    out = tmp / "out"
    p = run_dlt(py, tmp, "--datasource", dsf, "--output", out, "--credentials", cf, *args,
                env=runner_env(tmp / "runner-tmp", **extra))
    texts = [p.stdout, p.stderr]
    if (out / "ro-crate-metadata.json").exists():
        texts.append((out / "ro-crate-metadata.json").read_text())
    for t in texts:
        assert FILES_PASSWORD not in t and QUERY_SECRET not in t and "sig=" not in t
    return p, out


def test_https_files_basic_auth_and_crate(dlt_python, server, tmp_path):
    """Files as they are, under the native runner's https contract: basic
    auth, a pre-signed query sent on every request and never shown, paths
    relative to the base url, DIR/<last segment>, and the crate's sha256 and
    size those of the file (hashed by the runner while writing)."""
    a = os.urandom(700_000)
    b = "naïve,data\r\n1,2\r\n".encode()
    server.put("big.bin", a)
    server.put("sub/data file[1].csv", b)
    server.basic = ("alice", FILES_PASSWORD)
    server.need_query = "sig=" + QUERY_SECRET
    server.head_allowed = False  # the check falls back to a one-byte GET
    dsf, cf = files_job(tmp_path, f"https://127.0.0.1:{server.port}/data?sig={QUERY_SECRET}",
                        ["big.bin", "sub/data file[1].csv"], {"FilesUser": "alice", "FilesPassword": FILES_PASSWORD})
    # --format concerns tables: files are written as they are.
    p, out = run_files(dlt_python, tmp_path, server, dsf, cf, "--format", "parquet")
    assert p.returncode == 0, p.stderr
    assert "big.bin: 700000 bytes written to big.bin" in p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["big.bin", "data file[1].csv", "ro-crate-metadata.json"]
    assert (out / "big.bin").read_bytes() == a
    assert (out / "data file[1].csv").read_bytes() == b
    # Every request had the credentials and the query exactly as written; the
    # name's '[' and space were sent percent-encoded (a literal name, not a glob).
    reqs = server.gets("big.bin") + server.gets("big.bin", "HEAD") + server.gets("sub/data file[1].csv")
    assert reqs and all(r["headers"].get("authorization", "").startswith("Basic ") for r in reqs)
    assert all(r["query"] == "sig=" + QUERY_SECRET for r in server.requests)
    assert any(r["path"] == "/data/sub/data%20file%5B1%5D.csv" for r in server.requests)
    assert [r for r in server.gets("big.bin") if r["headers"].get("range") == "bytes=0-0"]
    crate = ROCrate(str(out))
    ents = {e.id: e for e in crate.data_entities}
    assert set(ents) == {"big.bin", "data%20file%5B1%5D.csv"}, set(ents)
    assert ents["big.bin"]["sha256"] == hashlib.sha256(a).hexdigest()
    assert str(ents["big.bin"]["contentSize"]) == str(len(a))
    assert ents["data%20file%5B1%5D.csv"]["sha256"] == hashlib.sha256(b).hexdigest()
    g = graph(out)
    assert g["#runner"]["name"] == "airlock-dlt-runner"
    assert g["#source"]["airlock:connectionTypes"] == ["https"] and g["#source"]["airlock:hosts"] == ["127.0.0.1"]
    assert "filesystem" in g["#source"]["airlock:extractor"]
    act = [e for e in g.values() if e.get("@type") == "CreateAction"][0]
    assert act["actionStatus"] == "CompletedActionStatus"


def test_https_bearer_token_and_digest(dlt_python, server, tmp_path):
    data = os.urandom(50_000)
    server.put("f.bin", data)
    server.bearer = FILES_PASSWORD
    server.digest_header = "Digest"
    dsf, cf = files_job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["f.bin"],
                        {"FilesPassword": FILES_PASSWORD}, user_key=None)
    p, out = run_files(dlt_python, tmp_path, server, dsf, cf)
    assert p.returncode == 0, p.stderr
    assert (out / "f.bin").read_bytes() == data
    # A server whose digest does not match: the file is refused, nothing left.
    shutil.rmtree(out)
    server.bad_digest = True
    server.digest_header = "Repr-Digest"
    p, out = run_files(dlt_python, tmp_path, server, dsf, cf)
    assert p.returncode == 1
    assert "checksum mismatch" in p.stderr and "Repr-Digest" in p.stderr, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["ro-crate-metadata.json"]
    act = [e for e in graph(out).values() if e.get("@type") == "CreateAction"][0]
    assert act["actionStatus"] == "FailedActionStatus"


def test_https_wrong_credentials(dlt_python, server, tmp_path):
    server.put("f.bin", b"data")
    server.basic = ("alice", "the-right-one")
    dsf, cf = files_job(tmp_path, f"https://127.0.0.1:{server.port}/data/?sig={QUERY_SECRET}", ["f.bin"],
                        {"FilesUser": "alice", "FilesPassword": FILES_PASSWORD})
    p, out = run_files(dlt_python, tmp_path, server, dsf, cf)
    assert p.returncode == 1
    assert "HTTP 401" in p.stderr and "'FilesUser'" in p.stderr and "'FilesPassword'" in p.stderr, p.stderr
    assert f"https://127.0.0.1:{server.port}/data/f.bin" in p.stderr  # the url, without its query
    assert len(p.stderr.strip().splitlines()) == 1
    assert not out.exists()  # checked before anything was written


def test_https_missing_file(dlt_python, server, tmp_path):
    server.put("f.bin", b"data")
    dsf, cf = files_job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["f.bin", "nope.bin"])
    p, out = run_files(dlt_python, tmp_path, server, dsf, cf)
    assert p.returncode == 1
    assert "'nope.bin' not found" in p.stderr and "HTTP 404" in p.stderr, p.stderr
    assert not out.exists()


def test_https_tls_verified_and_http_refused(dlt_python, server, tmp_path):
    server.put("f.bin", b"data")
    dsf, cf = files_job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["f.bin"])
    p, out = run_files(dlt_python, tmp_path, server, dsf, cf, ca=False)
    assert p.returncode == 1
    assert "TLS failed" in p.stderr and "AIRLOCK_CA_FILE" in p.stderr, p.stderr
    assert not out.exists()
    assert not server.gets("f.bin")  # nothing was asked over an unverified connection
    dsf, cf = files_job(tmp_path, f"http://127.0.0.1:{server.port}/data/", ["f.bin"])
    p, out = run_files(dlt_python, tmp_path, server, dsf, cf)
    assert p.returncode == 1 and "use https://" in p.stderr, p.stderr


def test_https_broken_transfer_is_not_resumed(dlt_python, server, tmp_path):
    """dlt's filesystem source cannot resume (docs/runner.md): a cut leaves no
    .part, the crate says Failed, and the retry downloads the whole file."""
    data = os.urandom(1_000_000)

    class CutTheDownload(dict):
        """The server's cut is for its next GET, and dlt's listing makes one
        (its body dropped) before the download: cut the second instead."""
        armed = True

        def get(self, name, default=None):
            gets = server.gets(name) if isinstance(name, str) else []
            if self.armed and len(gets) == 2:
                self.armed = False
                server.cut_after = 300_000
            return super().get(name, default)

    server.files = CutTheDownload()
    server.put("big.bin", data)
    dsf, cf = files_job(tmp_path, f"https://127.0.0.1:{server.port}/data/", ["big.bin"])
    p, out = run_files(dlt_python, tmp_path, server, dsf, cf)
    assert p.returncode == 1
    assert "broke off" in p.stderr and "run the job again" in p.stderr, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["ro-crate-metadata.json"]
    act = [e for e in graph(out).values() if e.get("@type") == "CreateAction"][0]
    assert act["actionStatus"] == "FailedActionStatus" and "big.bin" in act["error"]
    p, out = run_files(dlt_python, tmp_path, server, dsf, cf)
    assert p.returncode == 0, p.stderr
    assert (out / "big.bin").read_bytes() == data
    assert all("range" not in r["headers"] for r in server.gets("big.bin")[-2:])
