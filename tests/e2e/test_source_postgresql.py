"""End-to-end: `airlock run-job` against a real PostgreSQL server (pgserver.py).

Every cell the native runner writes is compared with what psql's own
`COPY ... TO STDOUT (FORMAT csv)` gives for the same table under the same
session settings (the runner's documented ones: UTC, ISO dates, exact
floats), except bytea, which the runner writes as base64 where psql writes
\\x hex. The comparison parses both files with a strict RFC 4180 reader that
keeps NULL (unquoted empty) apart from the empty string ("").

Uses the binary from $AIRLOCK_BIN (default bin/airlock) and the Debian
postgresql package's server (/usr/lib/postgresql/15/bin).
"""
import base64
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from pgserver import PgServer, quote_ident

AIRLOCK_BIN = os.environ.get("AIRLOCK_BIN", "bin/airlock")
PASSWORD = "pg-Secret-7f3a9c"          # the reader's password: must never appear anywhere
NOSELECT_PASSWORD = "pg-Other-Secret-51e2"
SESSION = ["SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, MDY'", "SET IntervalStyle = 'postgres'",
           "SET extra_float_digits = 3"]

FIXTURE_SQL = r"""
CREATE TABLE public.types (
  id int PRIMARY KEY,
  i2 smallint, i4 integer, i8 bigint,
  num numeric, num_s numeric(12,3),
  f4 real, f8 double precision,
  t text, vc varchar(40), ch char(4),
  d date, ts timestamp, tstz timestamptz, tm time, iv interval,
  b boolean, u uuid, by bytea, j json, jb jsonb, ia int[], ta text[]
);
INSERT INTO public.types VALUES
 (1, 32767, 2147483647, 9223372036854775807, 12345678901234567890.123456789, 1.5,
  3.4028235e38, 1.7976931348623157e308, 'plain', 'x', 'ab', '2024-02-29',
  '2024-01-02 03:04:05.123456', '2024-06-01 12:00:00+02', '23:59:59.999999',
  '1 year 2 mons 3 days 04:05:06', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff10',
  E'{"a": "b,\\"c\\"\\n"}', '{"k": [1, 2.5, null], "s": "é"}', '{1,2,NULL}',
  E'{"a b","c,d","e\\"f",NULL,"\\\\x"}'),
 (2, -32768, -2147483648, -9223372036854775808, 'NaN', -0.001, 'NaN', 'Infinity',
  'say "hi", ok', '', '', '0001-01-01', 'infinity', '-infinity', '00:00',
  '-1 days +00:00:01', false, NULL, '\x', 'null', '[]', '{}', '{}'),
 (3, 0, 0, 0, 0, 0, '-Infinity', '-0', E'line1\r\nline2\nline3\rend', 'Zoë café € 😀', 'ñ',
  '0044-03-15 BC', '1999-12-31 23:59:59', '2024-03-31 01:30:00 Europe/London', '12:00',
  '00:00:00.000001', NULL, '00000000-0000-0000-0000-000000000000', NULL, '{}', '{}', NULL, NULL),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (5, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, E'  spaces and\ttab  ', '\.', '"', '2024-01-01',
  '2024-01-01 00:00:00', '2024-01-01 00:00:00+00', '00:00:00', '0', true, NULL,
  (SELECT string_agg(set_byte('\x00'::bytea, 0, g % 256), ''::bytea) FROM generate_series(0, 99999) g),
  '"x"', '"x"', '{{1,2},{3,4}}', E'{"\\\\.",""}'),
 (6, 7, 7, 7, 1e-7, 1e-3, 1e-7, 0.30000000000000004, E'\\.', '', 'quo"', '2024-12-31',
  '2024-12-31 23:59:59.999999', '2024-12-31 23:59:59.999999-12:00', '01:02:03',
  '-178000000 years', false, NULL, '\x2c22', '{"x": 1e400}', '{"deep": {"a": [{"b": ","}]}}',
  '{-1}', '{"",NULL}');

CREATE SCHEMA clinic;
CREATE TABLE clinic.visits (visit_id bigint, patient text, seen_at timestamptz);
INSERT INTO clinic.visits SELECT g, 'patient ' || g, '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour'
  FROM generate_series(1, 2500) g;

CREATE TABLE public."we""ird name" ("col, with comma" text, "quote""col" int, "Ünï" text);
INSERT INTO public."we""ird name" VALUES ('a', 1, 'ü'), (NULL, NULL, ''), ('x,y', -1, E'z\nz');

CREATE TABLE public.single (v text);
INSERT INTO public.single VALUES (E'\\.'), (''), (NULL), ('x'), ('"');

CREATE TABLE public.secret (id int, note text);
INSERT INTO public.secret VALUES (1, 'not for everyone');

CREATE TABLE public.binarr (id int, blobs bytea[]);
INSERT INTO public.binarr VALUES (1, ARRAY['\x01'::bytea]);

CREATE TABLE public.counter (id int);
INSERT INTO public.counter VALUES (1), (2), (3);

-- A view that takes a few seconds to stream (20 rows, 0.15 s each): the
-- window in which another session commits.
CREATE VIEW public.slow AS
  SELECT g AS n FROM generate_series(1, 20) g WHERE pg_sleep(0.15) IS NOT NULL;

-- Fails after 4999 rows have been streamed.
CREATE VIEW public.boom AS SELECT g AS n, 1 / (5000 - g) AS inv FROM generate_series(1, 6000) g;
"""

DATA_TABLES = ["types", "clinic.visits", 'we"ird name', "single", "counter"]


# ---- the server -------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg():
    server = PgServer().start()
    try:
        server.create_role("reader", PASSWORD)
        server.create_role("noselect", NOSELECT_PASSWORD)
        server.create_database("gm", owner="postgres")
        server.sql(FIXTURE_SQL, db="gm")
        server.sql("GRANT USAGE ON SCHEMA clinic TO reader",
                   "GRANT SELECT ON ALL TABLES IN SCHEMA public, clinic TO reader",
                   "GRANT CONNECT ON DATABASE gm TO noselect",
                   "GRANT SELECT ON public.counter TO noselect", db="gm")
        yield server
    finally:
        server.close()


# ---- running the runner -----------------------------------------------------------

def datasource(port, tables, db="gm", conn_type="postgresql", host="127.0.0.1", url=None,
               user_key="PgUser", password_key="PgPassword"):
    return {
        "apiVersion": "xlscsde.nhs.uk/v1",
        "kind": "AnalyticsWorkspaceDataSource",
        "metadata": {"name": "pg-source", "labels": {"xlscsde.nhs.uk/type": "import"}},
        "spec": {
            "type": "Import",
            "publisher": {"organisation": "NHS Greater Manchester ICB",
                          "contact": {"name": "Shaun Turner", "role": "AWMS Developer"}},
            "project": {"id": "d4e6"},
            "displayName": "GM PostgreSQL extract",
            "description": "Tables from PostgreSQL.\n",
            "license": "Testing only.\n",
            "connections": [{"type": conn_type, "name": "gmdb",
                             "url": url or f"{conn_type}://{host}:{port}/{db}",
                             "credentials": {"userKey": user_key, "passwordKey": password_key}}],
            "objects": [{"table": {"name": t, "connection": "gmdb"}} for t in tables],
        },
    }


def write_inputs(tmp: Path, ds, user="reader", password=PASSWORD):
    dsf = tmp / "ds.json"
    dsf.write_text(json.dumps(ds))
    creds = tmp / "creds.json"
    creds.write_text(json.dumps({"PgUser": user, "PgPassword": password}))
    creds.chmod(0o600)
    return dsf, creds


def clean_env():
    """No PG* variables: libpq must get everything from the datasource."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["HOME"] = "/nonexistent"  # no ~/.pgpass either
    return env


def run_job(dsf, out, creds, **kw):
    return subprocess.run([AIRLOCK_BIN, "run-job", "--datasource", str(dsf), "--output", str(out),
                           "--credentials", str(creds)], capture_output=True, text=True,
                          env=clean_env(), timeout=300, **kw)


def assert_no_secret(r, out: Path, secrets=(PASSWORD, NOSELECT_PASSWORD)):
    for s in secrets:
        assert s not in r.stdout and s not in r.stderr
    if out.exists():
        for f in out.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                for s in secrets:
                    assert s.encode() not in data, f"secret found in {f}"


def assert_failed_cleanly(r, out: Path, *needles, tables=()):
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # one actionable line
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    assert_no_secret(r, out)
    for t in tables:
        assert not (out / f"{t}.csv").exists()
        assert not (out / f"{t}.csv.part").exists()
    return lines[0]


# ---- a strict CSV reader ------------------------------------------------------------

def parse_csv(data: bytes):
    """RFC 4180 records of (value, quoted) pairs; value None for an unquoted
    empty field (NULL). CRLF, LF or CR end a record outside quotes."""
    text = data.decode("utf-8")  # raises if not UTF-8
    records, fields, i, n = [], [], 0, len(text)
    if n == 0:
        return records
    while True:
        if i < n and text[i] == '"':
            j, val = i + 1, []
            while True:
                k = text.index('"', j)
                val.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    val.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            fields.append(("".join(val), True))
        else:
            j = i
            while j < n and text[j] not in ',\r\n':
                assert text[j] != '"', f"quote inside an unquoted field at {j}"
                j += 1
            fields.append((text[i:j] if j > i else None, False))
            i = j
        if i >= n:
            records.append(fields)
            return records
        c = text[i]
        if c == ",":
            i += 1
            continue
        assert c in "\r\n", f"unexpected {c!r} at {i}"
        i += 2 if text[i:i + 2] == "\r\n" else 1
        records.append(fields)
        fields = []
        if i >= n:
            return records


def assert_csv_h_form(data: bytes):
    """csv.h: CRLF record ends, quoting only where needed, UTF-8."""
    assert data.endswith(b"\r\n")
    for rec in parse_csv(data):
        for value, quoted in rec:
            needs = value == "" or (value is not None and any(c in value for c in ',"\r\n'))
            assert quoted == needs, f"field {value!r} quoted={quoted}"
    # every record end is CRLF: no bare LF/CR outside quoted fields
    body = data.decode()
    unquoted = "".join(part for k, part in enumerate(body.split('"')) if k % 2 == 0)
    assert unquoted.count("\n") == unquoted.count("\r\n") == unquoted.count("\r")


def values(rec):
    return [v for v, _ in rec]


def psql_truth(pg, table_sql, db="gm"):
    """psql's CSV of the table, with the runner's session settings."""
    data = pg.sql_bytes(*SESSION, f"COPY (SELECT * FROM {table_sql}) TO STDOUT (FORMAT csv, HEADER)",
                        db=db)
    return parse_csv(data)


def bytea_columns(pg, table_sql):
    out = pg.sql("SELECT attnum - 1 FROM pg_attribute WHERE attrelid = "
                 f"'{table_sql.replace(chr(39), chr(39) * 2)}'::regclass AND attnum > 0 "
                 "AND NOT attisdropped AND atttypid = 'bytea'::regtype", db="gm")
    return {int(x) for x in out.split()}


def column_types(pg, table_sql):
    out = pg.sql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                 f"'{table_sql.replace(chr(39), chr(39) * 2)}'::regclass AND attnum > 0 "
                 "AND NOT attisdropped ORDER BY attnum", db="gm")
    return out.splitlines()


def expected_rows(pg, table_sql):
    truth = psql_truth(pg, table_sql)
    header, rows = values(truth[0]), [values(r) for r in truth[1:]]
    for col in bytea_columns(pg, table_sql):
        for r in rows:
            if r[col] is not None:
                assert r[col].startswith("\\x")
                r[col] = base64.b64encode(bytes.fromhex(r[col][2:])).decode()
    return header, rows


TABLE_SQL = {"types": "public.types", "clinic.visits": "clinic.visits",
             'we"ird name': 'public."we""ird name"', "single": "public.single",
             "counter": "public.counter"}


# ---- tests ------------------------------------------------------------------------

def test_every_cell_matches_psql(pg, tmp_path):
    out = tmp_path / "out"
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, DATA_TABLES))
    r = run_job(dsf, out, creds)
    assert r.returncode == 0, r.stderr
    assert_no_secret(r, out)
    assert not list(out.glob("*.part"))
    for table in DATA_TABLES:
        data = (out / f"{table}.csv").read_bytes()
        assert_csv_h_form(data)
        got = parse_csv(data)
        header, want = expected_rows(pg, TABLE_SQL[table])
        assert values(got[0]) == header
        rows = [values(rec) for rec in got[1:]]
        key = (lambda row: int(row[0])) if table in ("types", "clinic.visits", "counter") else None
        if key:
            rows.sort(key=key)
            want.sort(key=key)
        assert len(rows) == len(want), table
        for g, w in zip(rows, want):
            for col, (gv, wv) in enumerate(zip(g, w)):
                assert gv == wv, f"{table} row {g[0]!r} column {header[col]!r}: {gv!r} != {wv!r}"
    # spot checks that say what the format promises, independent of psql
    types = {int(rec[0][0]): rec for rec in parse_csv((out / "types.csv").read_bytes())[1:]}
    hdr = values(parse_csv((out / "types.csv").read_bytes())[0])
    col = {name: k for k, name in enumerate(hdr)}
    assert types[2][col["t"]] == ('say "hi", ok', True)
    assert types[2][col["vc"]] == ("", True)                  # empty string: ""
    assert types[4][col["vc"]] == (None, False)               # NULL: empty, unquoted
    assert types[3][col["t"]] == ("line1\r\nline2\nline3\rend", True)
    assert types[3][col["vc"]][0] == "Zoë café € 😀"
    assert types[2][col["f8"]][0] == "Infinity" and types[2][col["f4"]][0] == "NaN"
    assert types[6][col["f8"]][0] == "0.30000000000000004"     # floats read back exactly
    assert types[1][col["by"]][0] == "AP8Q"                    # bytea -> base64
    assert types[2][col["by"]] == ("", True)                   # empty bytea -> ""
    big = base64.b64decode(types[5][col["by"]][0], validate=True)
    assert big == bytes(g % 256 for g in range(100000))        # no line breaks, exact
    assert types[1][col["tstz"]][0] == "2024-06-01 10:00:00+00"  # UTC
    assert types[5][col["vc"]] == ("\\.", False)
    single = parse_csv((out / "single.csv").read_bytes())
    assert [f for rec in single[1:] for f in rec] == [("\\.", False), ("", True), (None, False),
                                                      ("x", False), ('"', True)]


def test_rocrate(pg, tmp_path):
    out = tmp_path / "out"
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["types", "clinic.visits"],
                                                   conn_type="postgres"))
    r = run_job(dsf, out, creds)
    assert r.returncode == 0, r.stderr
    assert "clinic.visits: 2500 rows, 3 columns written to clinic.visits.csv" in r.stderr
    from rocrate.rocrate import ROCrate
    crate = ROCrate(str(out))
    assert sorted(e.id for e in crate.data_entities) == ["clinic.visits.csv", "types.csv"]
    visits = crate.dereference("clinic.visits.csv")
    assert visits["airlock:rowCount"] == 2500
    assert visits["airlock:columns"] == ["visit_id", "patient", "seen_at"]
    assert visits["airlock:columnTypes"] == ["bigint", "text", "timestamp with time zone"]
    types = crate.dereference("types.csv")
    assert types["airlock:rowCount"] == 6
    assert types["airlock:columnTypes"] == column_types(pg, "public.types")
    assert "numeric(12,3)" in types["airlock:columnTypes"]
    for e in crate.data_entities:
        data = (out / e.id).read_bytes()
        assert e["sha256"] == hashlib.sha256(data).hexdigest()
    meta_text = (out / "ro-crate-metadata.json").read_text()
    assert PASSWORD not in meta_text and "PgPassword" not in meta_text and "reader" not in meta_text
    src = crate.dereference("#source")
    assert src["airlock:connectionTypes"] == ["postgres"]
    assert src["airlock:hosts"] == ["127.0.0.1"]
    assert src["airlock:databases"] == ["gm"]
    version = pg.sql("SHOW server_version").split()[0]
    assert src["airlock:serverVersions"] == [version]
    assert src["airlock:tables"] == ["types", "clinic.visits"]
    action = [e for e in crate.contextual_entities if e.type == "CreateAction"][0]
    assert action["actionStatus"] == "CompletedActionStatus"


def test_one_snapshot_for_all_tables(pg, tmp_path):
    """Another session commits while the first table streams: the second
    table, read later in the same run, must not see it."""
    out = tmp_path / "out"
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["slow", "counter"]))
    before = pg.sql("SELECT count(*) FROM public.counter", db="gm").strip()
    p = subprocess.Popen([AIRLOCK_BIN, "run-job", "--datasource", str(dsf), "--output", str(out),
                          "--credentials", str(creds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=clean_env())
    try:
        deadline = time.time() + 30
        while not (out / "slow.csv.part").exists():
            assert p.poll() is None, p.communicate()
            assert time.time() < deadline, "the export of 'slow' never started"
            time.sleep(0.01)
        pg.sql("INSERT INTO public.counter VALUES (1000)", "UPDATE public.counter SET id = -id WHERE id = 1",
               db="gm")
        # the commit happened while the first table was still streaming
        assert (out / "slow.csv.part").exists() and not (out / "counter.csv").exists()
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, stderr
    assert pg.sql("SELECT count(*) FROM public.counter", db="gm").strip() == str(int(before) + 1)
    rows = [values(rec) for rec in parse_csv((out / "counter.csv").read_bytes())[1:]]
    assert sorted(int(r[0]) for r in rows) == [1, 2, 3]  # neither the insert nor the update
    assert len(parse_csv((out / "slow.csv").read_bytes())) == 21
    pg.sql("DELETE FROM public.counter WHERE id = 1000", "UPDATE public.counter SET id = 1 WHERE id = -1",
           db="gm")


def test_wrong_password(pg, tmp_path):
    out = tmp_path / "out"
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["types"]), password="wrong-" + PASSWORD)
    r = run_job(dsf, out, creds)
    line = assert_failed_cleanly(r, out, "connection 'gmdb'", f"127.0.0.1:{pg.port}", "database gm",
                                 'password authentication failed for user "reader"',
                                 "check the credentials in Secret key PgPassword", tables=["types"])
    assert "wrong-" not in line
    assert not out.exists()  # nothing written: checked before the first byte
    # fixed: the right password
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["types"]))
    r = run_job(dsf, out, creds)
    assert r.returncode == 0, r.stderr
    assert (out / "types.csv").exists()


def test_unreachable_port(pg, tmp_path):
    out = tmp_path / "out"
    from pgserver import free_port
    dead = free_port()
    dsf, creds = write_inputs(tmp_path, datasource(dead, ["types"]))
    r = run_job(dsf, out, creds)
    assert_failed_cleanly(r, out, "connection 'gmdb'", f"postgresql database gm on 127.0.0.1:{dead}",
                          "cannot reach the server", "Connection refused", tables=["types"])
    assert not out.exists()


def test_missing_database_then_fixed(pg, tmp_path):
    out = tmp_path / "out"
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["counter"], db="later"))
    r = run_job(dsf, out, creds)
    assert_failed_cleanly(r, out, f"127.0.0.1:{pg.port}", 'database "later" does not exist',
                          "check the database name in the connection url", tables=["counter"])
    pg.create_database("later", owner="reader")
    pg.sql("CREATE TABLE counter (id int)", "INSERT INTO counter VALUES (42)", db="later", user="reader")
    r = run_job(dsf, out, creds)
    assert r.returncode == 0, r.stderr
    assert (out / "counter.csv").read_bytes() == b"id\r\n42\r\n"


def test_missing_table_lists_tables(pg, tmp_path):
    out = tmp_path / "out"
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["counter", "nope", "types"]))
    r = run_job(dsf, out, creds)
    line = assert_failed_cleanly(r, out, "connection 'gmdb'",
                                 f"table 'nope' not found in postgresql database gm on 127.0.0.1:{pg.port}",
                                 "tables present: ", "binarr", "boom", "clinic.visits", "counter", "single",
                                 "types", 'we"ird name', tables=["counter", "nope", "types"])
    assert not out.exists()
    # a schema that does not exist, and a table that is not in the schema named
    for name in ("nowhere.types", "clinic.types"):
        dsf, creds = write_inputs(tmp_path, datasource(pg.port, [name]))
        r = run_job(dsf, out, creds)
        assert_failed_cleanly(r, out, f"table '{name}' not found", "clinic.visits", tables=[name])
    # at most 30 names, then "and N more"
    pg.sql("CREATE SCHEMA many", db="gm")
    pg.sql("DO $$BEGIN FOR i IN 1..40 LOOP EXECUTE format('CREATE TABLE many.t%s (x int)', i); END LOOP; END$$",
           db="gm")
    try:
        dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["nope"]))
        r = run_job(dsf, out, creds)
        line = assert_failed_cleanly(r, out, "tables present: ", " and ")
        listed = line.split("tables present: ")[1]
        more = int(listed.rsplit(" and ", 1)[1].split()[0])
        assert listed.count(", ") == 29 and more > 0
        assert line.endswith(" more")
    finally:
        pg.sql("DROP SCHEMA many CASCADE", db="gm")


def test_permission_denied_then_granted(pg, tmp_path):
    out = tmp_path / "out"
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["counter", "secret"]), user="noselect",
                              password=NOSELECT_PASSWORD)
    r = run_job(dsf, out, creds)
    assert_failed_cleanly(r, out, "connection 'gmdb'", "table 'secret'", "permission denied",
                          'role "noselect" has no SELECT privilege on "public"."secret" (columns: id, note)',
                          'GRANT SELECT ON "public"."secret" TO "noselect"', tables=["counter", "secret"])
    assert not out.exists()
    pg.sql("GRANT SELECT ON public.secret TO noselect", db="gm")
    try:
        r = run_job(dsf, out, creds)
        assert r.returncode == 0, r.stderr
        assert (out / "secret.csv").read_bytes() == b"id,note\r\n1,not for everyone\r\n"
        assert_no_secret(r, out)
    finally:
        pg.sql("REVOKE SELECT ON public.secret FROM noselect", db="gm")


def test_row_level_security_is_not_bypassed_silently(pg, tmp_path):
    out = tmp_path / "out"
    pg.sql("CREATE TABLE public.rls (id int, owner text)", "INSERT INTO public.rls VALUES (1, 'a'), (2, 'b')",
           "ALTER TABLE public.rls ENABLE ROW LEVEL SECURITY",
           "CREATE POLICY only_a ON public.rls USING (owner = 'a')",
           "GRANT SELECT ON public.rls TO reader", db="gm")
    try:
        dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["rls"]))
        r = run_job(dsf, out, creds)
        assert_failed_cleanly(r, out, "table 'rls'", "row-level security", "BYPASSRLS", tables=["rls"])
    finally:
        pg.sql("DROP TABLE public.rls", db="gm")


def test_unconvertible_column_type(pg, tmp_path):
    out = tmp_path / "out"
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["counter", "binarr"]))
    pg.sql("GRANT SELECT ON public.binarr TO reader", db="gm")
    r = run_job(dsf, out, creds)
    assert_failed_cleanly(r, out, "table 'binarr'", "column 'blobs' has type bytea[]", "encode(",
                          tables=["counter", "binarr"])
    assert not out.exists()


def test_failure_mid_stream_leaves_no_file(pg, tmp_path):
    out = tmp_path / "out"
    pg.sql("GRANT SELECT ON public.boom TO reader", db="gm")
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["counter", "boom"]))
    r = run_job(dsf, out, creds)
    assert r.returncode == 1
    line = r.stderr.strip().splitlines()[-1]
    assert "table 'boom' after 4999 rows" in line and "division by zero" in line, r.stderr
    assert_no_secret(r, out)
    assert not (out / "boom.csv").exists() and not (out / "boom.csv.part").exists()
    assert (out / "counter.csv").exists()  # finished before the failure: stays
    meta = json.loads((out / "ro-crate-metadata.json").read_text())
    action = [e for e in meta["@graph"] if e["@type"] == "CreateAction"][0]
    assert action["actionStatus"] == "FailedActionStatus" and "division by zero" in action["error"]


def test_connection_lost_mid_stream(pg, tmp_path):
    """The server ends the session while rows stream: a clear failure, and
    the half-written table is removed."""
    out = tmp_path / "out"
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["counter", "slow"]))
    p = subprocess.Popen([AIRLOCK_BIN, "run-job", "--datasource", str(dsf), "--output", str(out),
                          "--credentials", str(creds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=clean_env())
    try:
        deadline = time.time() + 30
        while not (out / "slow.csv.part").exists():
            assert p.poll() is None, p.communicate()
            assert time.time() < deadline, "the export of 'slow' never started"
            time.sleep(0.01)
        killed = pg.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'airlock-runner'").strip()
        assert killed == "1"
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 1, stderr
    line = stderr.strip().splitlines()[-1]
    assert "connection 'gmdb': table 'slow' after " in line, line
    assert "terminating connection due to administrator command" in line or "lost the connection" in line
    assert_no_secret(subprocess.CompletedProcess([], 1, stdout, stderr), out)
    assert not (out / "slow.csv").exists() and not (out / "slow.csv.part").exists()
    assert (out / "counter.csv").exists()


def test_invalid_utf8_in_sql_ascii_database(pg, tmp_path):
    """A SQL_ASCII database stores any bytes as text; PostgreSQL itself
    refuses to send them as UTF-8 (the runner checks UTF-8 too, for servers
    that would not: see the unit tests)."""
    out = tmp_path / "out"
    pg.create_database("legacy", owner="reader", encoding="SQL_ASCII")
    pg.sql("CREATE TABLE notes (id int, s text)",
           "INSERT INTO notes VALUES (1, 'fine'), (2, convert_from('\\x61ff62'::bytea, 'SQL_ASCII'))",
           db="legacy", user="reader")
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["notes"], db="legacy"))
    r = run_job(dsf, out, creds)
    line = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1
    for needle in ("connection 'gmdb': table 'notes' after 1 row in postgresql database legacy on 127.0.0.1",
                   'invalid byte sequence for encoding "UTF8"', "the database's encoding is SQL_ASCII"):
        assert needle in line, r.stderr
    assert_no_secret(r, out)
    assert not (out / "notes.csv").exists() and not (out / "notes.csv.part").exists()


def test_url_with_password_refused(pg, tmp_path):
    out = tmp_path / "out"
    ds = datasource(pg.port, ["counter"], url=f"postgresql://reader:{PASSWORD}@127.0.0.1:{pg.port}/gm")
    dsf, creds = write_inputs(tmp_path, ds)
    r = run_job(dsf, out, creds)
    assert_failed_cleanly(r, out, "must not carry a user or password", "credentials.passwordKey",
                          tables=["counter"])
    assert not out.exists()
    # a missing key is named
    dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["counter"], password_key="Nope"))
    r = run_job(dsf, out, creds)
    assert_failed_cleanly(r, out, "credentials.passwordKey 'Nope' is not among the job's credentials")


def test_memory_stays_flat(pg, tmp_path):
    """300,000 rows (~30 MB of CSV): the runner's peak RSS stays small."""
    pg.sql("CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS h, g * 0.5 AS x, "
           "now() AS at, repeat('y', 20) AS pad FROM generate_series(1, 300000) g",
           "GRANT SELECT ON public.big TO reader", db="gm")
    try:
        out = tmp_path / "out"
        dsf, creds = write_inputs(tmp_path, datasource(pg.port, ["big"]))
        # GNU time measures the runner alone: a child forked from pytest
        # would start with pytest's own peak in its rusage.
        assert os.access("/usr/bin/time", os.X_OK), "needs GNU time: apt-get install time"
        peak = tmp_path / "peak"
        env, limit_kib = clean_env(), 32 * 1024
        ldd = subprocess.run(["ldd", AIRLOCK_BIN], capture_output=True, text=True).stdout
        if "libasan" in ldd:
            # The sanitizer build: ASan's quarantine keeps every freed row
            # (256 MB by default) and its shadow memory adds to any RSS.
            env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0").lstrip(":")
            limit_kib = 48 * 1024
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(peak), AIRLOCK_BIN, "run-job",
                            "--datasource", str(dsf), "--output", str(out), "--credentials", str(creds)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 0, p.stderr
        assert (out / "big.csv").stat().st_size > 25_000_000
        assert "big: 300000 rows" in p.stderr
        peak_kib = int(peak.read_text().split()[-1])
        assert peak_kib < limit_kib, f"peak RSS {peak_kib} KiB"
    finally:
        pg.sql("DROP TABLE public.big", db="gm")
