"""End-to-end: `airlock run-job` reading a real MariaDB server (connection
types mariadb and mysql) into CSV + RO-Crate, and its faults.

Starts Debian's mariadbd (tests/e2e/mariadbserver.py) with real
authentication; every cell is compared with what the server itself returns
(`mariadb --batch`, binary as HEX(), BIT as +0) and, for the awkward values,
with the values the test inserted.
"""
import base64
import json
import os
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from mariadbserver import MariaDBServer, ident, lit

AIRLOCK_BIN = os.environ.get("AIRLOCK_BIN", "bin/airlock")
PASSWORD = "pa'ss\"w0rd-SECRET-93f1"
LIMITED_PASSWORD = "limited-SECRET-7c2e"
AUDITOR_PASSWORD = "auditor-SECRET-51d0"
SECRETS = (PASSWORD, LIMITED_PASSWORD, AUDITOR_PASSWORD)

BINARY_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}

INT_COLS = ("id INT PRIMARY KEY, ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, "
            "mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED, "
            "flag BOOLEAN, yr YEAR")
INT_ROWS = [
    (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -2**63, 2**64 - 1, True, 1901),
    (2, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 2**63 - 1, 0, False, 2155),
    (3, 0, None, None, None, None, None, None, None, None, None, None, None),
]

NUM_COLS = "id INT PRIMARY KEY, d30 DECIMAL(30,10), d5 DECIMAL(5,0), f FLOAT, dbl DOUBLE"
NUM_ROWS = [
    (1, "12345678901234567890.0123456789", "-99999", 3.14, 0.1 + 0.2),
    (2, "-0.0000000001", "0", -1.5e-7, 1e300),
    (3, None, None, None, None),
    (4, "0", "1", 1e20, -2.2250738585072014e-308),
]

BIG_TEXT = "é" * 300_000  # 600 kB: larger than the CSV writer's 256 KiB buffer
TEXT_COLS = ("id INT PRIMARY KEY, vc VARCHAR(300), tx MEDIUMTEXT, ch CHAR(5), l1 VARCHAR(50) CHARACTER SET latin1, "
             "e ENUM('a','b,c','d\"e'), st SET('x','y','z'), j JSON")
TEXT_ROWS = [
    (1, "plain", 'a,b "quoted"', "abc", "café", "a", "x,z", '{"a": [1, "x,y"], "q": "say \\"hi\\""}'),
    (2, "", None, "", "", "b,c", "", "[]"),
    (3, "line1\r\nline2\nline3", "\ttab and trailing space ", "ü", "Zoë", 'd"e', "y", "null"),
    (4, "😀 emoji 𝄞 Zoë € 中文", BIG_TEXT, "€€€€€", "naïve", None, "x,y,z", None),
    (5, None, None, None, None, None, None, None),
    (6, "Robert'); DROP TABLE students;--", "back\\slash \\n not a newline", "`x`", "x;y", "a", None,
     '{"emoji": "😀"}'),
]

TIME_COLS = "id INT PRIMARY KEY, d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL, t TIME(3), y YEAR"
TIME_ROWS = [
    (1, "2024-02-29", "2024-02-29 23:59:59.123456", "2024-02-29 23:59:59.123456", "-838:59:59", 2024),
    (2, "1000-01-01", "9999-12-31 23:59:59.999999", "1970-01-01 00:00:01", "00:00:00.5", 1901),
    (3, None, None, None, None, None),
]
TIME_EXPECTED = [
    ["1", "2024-02-29", "2024-02-29 23:59:59.123456", "2024-02-29 23:59:59.123456", "-838:59:59.000", "2024"],
    ["2", "1000-01-01", "9999-12-31 23:59:59.999999", "1970-01-01 00:00:01.000000", "00:00:00.500", "1901"],
    ["3", None, None, None, None, None],
    # inserted as 12:00 in +05:30: a TIMESTAMP comes out in UTC, a DATETIME as written
    ["4", "2024-06-01", "2024-06-01 12:00:00.000000", "2024-06-01 06:30:00.000000", "12:00:00.000", "2024"],
]

BLOB_BIG = bytes(range(256)) * 1200  # 300 kB -> 400 kB of base64
BIN_COLS = ("id INT PRIMARY KEY, bl BLOB, mb MEDIUMBLOB, vb VARBINARY(64), bn BINARY(4), b1 BIT(1), b10 BIT(10), "
            "b64 BIT(64), u UUID, ip INET6")
BIN_ROWS = [
    (1, b"\x00\xff\x10", b"", b"ab", b"ab", 1, 682, 2**64 - 1, "123e4567-e89b-12d3-a456-426614174000", "2001:db8::1"),
    (2, b"", BLOB_BIG, b"\r\n,\"", b"\x00\x00\x00\x00", 0, 0, 0, None, "::ffff:10.0.0.1"),
    (3, None, None, None, None, None, None, None, None, None),
]

ODD_TABLE = "odd `name` x"


def b64(b):
    return base64.b64encode(b).decode()


def parse_csv(data: bytes):
    """RFC 4180 as csv.h writes it: CRLF records; an unquoted empty field is
    None (NULL), a quoted one "" (the empty string)."""
    text = data.decode("utf-8")
    rows, row, i, n = [], [], 0, len(text)
    while i < n:
        if text[i] == '"':
            j, parts = i + 1, []
            while True:
                k = text.index('"', j)
                parts.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    parts.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            row.append("".join(parts))
        else:
            m = re.compile(r"[,\r]").search(text, i)
            k = m.start() if m else n
            row.append(text[i:k] if k > i else None)
            i = k
        if text.startswith(",", i):
            i += 1
        elif text.startswith("\r\n", i):
            rows.append(row)
            row = []
            i += 2
        else:
            raise AssertionError(f"malformed CSV at {i}: {text[i:i + 20]!r}")
    assert not row, "last record lacks CRLF"
    return rows


def ground_truth(srv, db, table):
    """(names, column types, rows as the runner must write them), from the server."""
    cols = srv.query(f"SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
                     f"WHERE TABLE_SCHEMA = {lit(db)} AND TABLE_NAME = {lit(table)} "
                     f"AND EXTRA NOT LIKE '%INVISIBLE%' ORDER BY ORDINAL_POSITION")
    exprs = []
    for name, dt, _ in cols:
        if dt in BINARY_TYPES:
            exprs.append(f"HEX({ident(name)})")
        elif dt == "bit":
            exprs.append(f"{ident(name)} + 0")
        else:
            exprs.append(ident(name))
    rows = srv.query(f"SET time_zone = '+00:00'; SELECT {', '.join(exprs)} FROM {ident(db)}.{ident(table)}")
    for r in rows:
        for k, (_, dt, _) in enumerate(cols):
            if dt in BINARY_TYPES and r[k] is not None:
                r[k] = b64(bytes.fromhex(r[k]))
    return [c[0] for c in cols], [c[2] for c in cols], rows


def insert(srv, db, table, rows, tz="+00:00"):
    values = ",\n".join("(" + ", ".join(lit(v) for v in r) + ")" for r in rows)
    srv.sql(f"SET time_zone = '{tz}'; INSERT INTO {ident(db)}.{ident(table)} VALUES {values};")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = MariaDBServer(tmp_path_factory.mktemp("mariadb")).start()
    try:
        s.sql(f"""
CREATE DATABASE gm; CREATE DATABASE other; CREATE DATABASE many;
CREATE TABLE gm.types_int ({INT_COLS});
CREATE TABLE gm.types_num ({NUM_COLS});
CREATE TABLE gm.types_text ({TEXT_COLS}) DEFAULT CHARSET=utf8mb4;
CREATE TABLE gm.types_time ({TIME_COLS});
CREATE TABLE gm.types_bin ({BIN_COLS});
CREATE TABLE gm.{ident(ODD_TABLE)} (id INT, `we"ird, col` VARCHAR(20), `naïve` VARCHAR(5)) DEFAULT CHARSET=utf8mb4;
INSERT INTO gm.{ident(ODD_TABLE)} VALUES (1, 'v,1', {lit('é')}), (2, NULL, '');
CREATE TABLE gm.empty_t (id INT, v VARCHAR(5));
CREATE TABLE gm.inv (id INT, hidden INT INVISIBLE);
INSERT INTO gm.inv (id, hidden) VALUES (1, 10), (2, 20);
CREATE VIEW gm.v_int AS SELECT id, bi, biu FROM gm.types_int;
CREATE TABLE gm.secret (id INT, v VARCHAR(10));
INSERT INTO gm.secret VALUES (1, 'classified');
CREATE TABLE gm.snap (id INT PRIMARY KEY);
INSERT INTO gm.snap VALUES (1), (2), (3);
CREATE TABLE gm.ctl (delay INT);
INSERT INTO gm.ctl VALUES (30);
CREATE VIEW gm.slow AS SELECT seq AS id, SLEEP(IF(seq = 5000, (SELECT delay FROM gm.ctl), 0)) AS z
  FROM gm.seq_1_to_10000;
CREATE TABLE other.t2 (id INT, v VARCHAR(10));
INSERT INTO other.t2 VALUES (1, 'x'), (2, 'y');
""")
        s.sql("".join(f"CREATE TABLE many.t{i:02d} (id INT);" for i in range(35)))
        insert(s, "gm", "types_int", INT_ROWS)
        insert(s, "gm", "types_num", NUM_ROWS)
        insert(s, "gm", "types_text", TEXT_ROWS)
        insert(s, "gm", "types_time", TIME_ROWS)
        insert(s, "gm", "types_time", [(4, "2024-06-01", "2024-06-01 12:00:00", "2024-06-01 12:00:00",
                                        "12:00:00", 2024)], tz="+05:30")
        insert(s, "gm", "types_bin", BIN_ROWS)
        s.create_user("reader", PASSWORD, "GRANT SELECT ON gm.* TO {user}", "GRANT SELECT ON other.* TO {user}",
                      "GRANT SELECT ON many.* TO {user}")
        s.create_user("limited", LIMITED_PASSWORD, "GRANT SELECT ON gm.types_int TO {user}",
                      "GRANT INSERT ON gm.secret TO {user}")
        s.create_user("auditor", AUDITOR_PASSWORD, "GRANT SELECT ON *.* TO {user}")
        yield s
    finally:
        s.stop()


def url(srv, db="gm", port=None, scheme="mariadb", query=""):
    return f"{scheme}://{srv.host}:{port or srv.port}/{db}{query}"


def write_job(tmp: Path, objects, conn_url, user="reader", password=PASSWORD, conn_type="mariadb",
              credentials=None):
    ds = {
        "apiVersion": "xlscsde.nhs.uk/v1",
        "kind": "AnalyticsWorkspaceDataSource",
        "metadata": {"name": "mariadb-source", "labels": {"xlscsde.nhs.uk/type": "import"}},
        "spec": {
            "type": "Import",
            "publisher": {"organisation": "NHS Greater Manchester ICB",
                          "contact": {"name": "Shaun Turner", "role": "AWMS Developer"}},
            "project": {"id": "d4e6"},
            "displayName": "GM from MariaDB",
            "description": "Fixture tables.\n",
            "license": "Testing only.\n",
            "connections": [{"type": conn_type, "name": "gm", "url": conn_url,
                             "credentials": credentials or {"userKey": "DbUser", "passwordKey": "DbPassword"}}],
            "objects": [{"table": {"name": o, "connection": "gm"}} for o in objects],
        },
    }
    tmp.mkdir(parents=True, exist_ok=True)
    dsf = tmp / "ds.json"
    dsf.write_text(json.dumps(ds))
    creds = tmp / "creds.json"
    values = {}
    if user is not None:
        values["DbUser"] = user
    if password is not None:
        values["DbPassword"] = password
    creds.write_text(json.dumps(values))
    creds.chmod(0o600)
    return dsf, creds


def run_job(tmp: Path, objects, conn_url, out="out", **kw):
    dsf, creds = write_job(tmp, objects, conn_url, **kw)
    outdir = tmp / out
    p = subprocess.run([AIRLOCK_BIN, "run-job", "--datasource", dsf, "--output", outdir, "--credentials", creds],
                       capture_output=True, text=True, timeout=600)
    return p, outdir


def assert_no_secret(p, outdir=None):
    text = p.stdout + p.stderr
    for s in SECRETS:
        assert s not in text
    if outdir and outdir.exists():
        for f in outdir.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                for s in SECRETS:
                    assert s.encode() not in data, f"secret in {f}"


def assert_failed_cleanly(p, outdir, tables):
    assert p.returncode == 1, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("airlock run-job: ")]
    assert len(errors) == 1 and p.stderr.rstrip("\n").endswith(errors[0]), p.stderr  # one actionable line
    assert_no_secret(p, outdir)
    for t in tables:
        assert not (outdir / f"{t}.csv").exists()
        assert not (outdir / f"{t}.csv.part").exists()


# -- the data --------------------------------------------------------------------

TABLES = ["types_int", "types_num", "types_text", "types_time", "types_bin", ODD_TABLE, "empty_t", "inv",
          "v_int", "other.t2"]


def test_types_roundtrip_and_crate(srv, tmp_path):
    p, out = run_job(tmp_path, TABLES, url(srv))
    assert p.returncode == 0, p.stderr
    assert "types_int: 3 rows, 13 columns written to types_int.csv" in p.stderr
    assert_no_secret(p, out)
    assert sorted(f.name for f in out.iterdir()) == sorted([f"{t}.csv" for t in TABLES] + ["ro-crate-metadata.json"])

    csvs = {t: parse_csv((out / f"{t}.csv").read_bytes()) for t in TABLES}
    truth = {}
    for t in TABLES:
        db, name = ("other", "t2") if t == "other.t2" else ("gm", t)
        names, types, rows = ground_truth(srv, db, name)
        truth[t] = (names, types)
        assert csvs[t][0] == names, t
        assert csvs[t][1:] == rows, t  # every cell, NULL and "" told apart

    # independent of the server's own rendering: what the test inserted
    ints = csvs["types_int"][1:]
    for got, want in zip(ints, INT_ROWS):
        assert got == [None if v is None else str(int(v)) for v in want]
    nums = csvs["types_num"][1:]
    assert nums[0][1] == "12345678901234567890.0123456789" and nums[0][2] == "-99999"
    assert nums[1][1] == "-0.0000000001"
    assert float(nums[0][4]) == 0.1 + 0.2 and float(nums[1][4]) == 1e300  # DOUBLEs read back exactly
    assert float(nums[3][4]) == -2.2250738585072014e-308
    assert float(nums[0][3]) == pytest.approx(3.14, rel=1e-6)  # FLOAT: single precision
    assert nums[2][1:] == [None] * 4
    text = csvs["types_text"][1:]
    for got, want in zip(text, TEXT_ROWS):
        assert got == [str(want[0])] + list(want[1:])
    raw_text = (out / "types_text.csv").read_bytes()
    assert b'\r\n2,"",,"","","b,c","",[]\r\n' in raw_text  # empty strings quoted, NULL bare
    assert b'\r\n5,,,,,,,\r\n' in raw_text
    assert csvs["types_time"][1:] == TIME_EXPECTED
    bins = csvs["types_bin"][1:]
    assert bins[0] == ["1", b64(b"\x00\xff\x10"), "", b64(b"ab"), b64(b"ab\x00\x00"), "1", "682",
                       str(2**64 - 1), "123e4567-e89b-12d3-a456-426614174000", "2001:db8::1"]
    assert bins[1][2] == b64(BLOB_BIG) and bins[1][5:8] == ["0", "0", "0"]
    assert bins[2][1:] == [None] * 9
    assert csvs[ODD_TABLE] == [["id", 'we"ird, col', "naïve"], ["1", "v,1", "é"], ["2", None, ""]]
    assert (out / f"{ODD_TABLE}.csv").read_bytes().startswith(b'id,"we""ird, col",na\xc3\xafve\r\n')
    assert csvs["empty_t"] == [["id", "v"]]
    assert csvs["inv"] == [["id"], ["1"], ["2"]]  # INVISIBLE columns are not part of SELECT *
    assert csvs["v_int"][1] == ["1", str(-2**63), str(2**64 - 1)]
    assert csvs["other.t2"] == [["id", "v"], ["1", "x"], ["2", "y"]]

    # the RO-Crate
    from rocrate.rocrate import ROCrate
    crate = ROCrate(str(out))
    ids = sorted(unquote(e.id) for e in crate.data_entities)  # ids are percent-encoded paths
    assert ids == sorted(f"{t}.csv" for t in TABLES)
    for t in TABLES:
        e = crate.dereference(quote(f"{t}.csv"))
        assert e is not None, t
        assert e["airlock:rowCount"] == len(csvs[t]) - 1
        assert e["airlock:columns"] == truth[t][0]
        assert e["airlock:columnTypes"] == truth[t][1]
    ti = crate.dereference("types_int.csv")
    assert ti["airlock:columnTypes"][:3] == ["int(11)", "tinyint(4)", "tinyint(3) unsigned"]
    assert crate.dereference("types_bin.csv")["airlock:columnTypes"][5:8] == ["bit(1)", "bit(10)", "bit(64)"]
    meta = json.loads((out / "ro-crate-metadata.json").read_text())
    graph = {e["@id"]: e for e in meta["@graph"]}
    src = graph["#source"]
    assert src["airlock:connectionTypes"] == ["mariadb"]
    assert src["airlock:hosts"] == ["127.0.0.1"]
    assert src["airlock:databases"] == ["gm"]
    assert src["airlock:serverVersions"][0].startswith("10.11")
    action = [e for e in meta["@graph"] if e.get("@type") == "CreateAction"][0]
    assert action["actionStatus"] == "CompletedActionStatus"
    text = json.dumps(meta)
    assert "reader" not in text and "DbPassword" not in text and "DbUser" not in text


def test_mysql_type_over_socket_user_from_url(srv, tmp_path):
    # "mysql" is the same source; a user in the url when the credentials
    # give only a password; a Unix socket instead of TCP.
    u = f"mysql://reader@localhost/gm?socket={srv.socket}"
    p, out = run_job(tmp_path, ["types_int"], u, conn_type="mysql", user=None,
                     credentials={"passwordKey": "DbPassword"})
    assert p.returncode == 0, p.stderr
    assert parse_csv((out / "types_int.csv").read_bytes())[1][0] == "1"
    meta = json.loads((out / "ro-crate-metadata.json").read_text())
    src = {e["@id"]: e for e in meta["@graph"]}["#source"]
    assert src["airlock:connectionTypes"] == ["mysql"] and src["airlock:hosts"] == ["localhost"]
    assert_no_secret(p, out)


def test_one_snapshot_for_all_tables(srv, tmp_path):
    """A row committed after the job began is not seen, even in a table read later."""
    lock = srv.session("gm")
    try:
        lock.execute("LOCK TABLES snap WRITE")
        dsf, creds = write_job(tmp_path, ["types_int", "snap"], url(srv))
        proc = subprocess.Popen([AIRLOCK_BIN, "run-job", "--datasource", dsf, "--output", tmp_path / "out",
                                 "--credentials", creds], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            # The job has opened its snapshot and now waits for the lock on snap.
            deadline = time.time() + 30
            while time.time() < deadline:
                rows = srv.query("SELECT STATE FROM information_schema.PROCESSLIST WHERE USER = 'reader'")
                if any(r[0] and "metadata lock" in r[0] for r in rows):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"the job never waited for the lock: {rows}")
            lock.execute("INSERT INTO snap VALUES (999)")
            lock.execute("UNLOCK TABLES")
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        lock.close()
    assert proc.returncode == 0, stderr
    assert parse_csv((tmp_path / "out" / "snap.csv").read_bytes()) == [["id"], ["1"], ["2"], ["3"]]
    # a new job sees it
    p, out = run_job(tmp_path, ["snap"], url(srv), out="out2")
    assert p.returncode == 0, p.stderr
    assert ["999"] in parse_csv((out / "snap.csv").read_bytes())


# -- faults: non-zero exit, one actionable line, no secret, no CSV left; a retry succeeds

def test_fault_wrong_password(srv, tmp_path):
    p, out = run_job(tmp_path, ["types_int"], url(srv), password="wrong-" + PASSWORD)
    assert_failed_cleanly(p, out, ["types_int"])
    assert "wrong-" not in p.stderr
    assert f"MariaDB server 127.0.0.1:{srv.port}, database 'gm': access denied for user 'reader'" in p.stderr
    assert "credentials.passwordKey 'DbPassword'" in p.stderr
    assert not out.exists()
    p, out = run_job(tmp_path, ["types_int"], url(srv))
    assert p.returncode == 0, p.stderr


def test_fault_unreachable(srv, tmp_path):
    from mariadbserver import free_port
    dead = free_port()
    p, out = run_job(tmp_path, ["types_int"], url(srv, port=dead))
    assert_failed_cleanly(p, out, ["types_int"])
    assert f"127.0.0.1:{dead}" in p.stderr and "cannot reach the server" in p.stderr
    assert not out.exists()
    p, out = run_job(tmp_path, ["types_int"], url(srv))
    assert p.returncode == 0, p.stderr


def test_fault_unknown_database(srv, tmp_path):
    # a user who could see every database: the server says it does not exist
    p, out = run_job(tmp_path, ["types_int"], url(srv, db="gm_typo"), user="auditor", password=AUDITOR_PASSWORD)
    assert_failed_cleanly(p, out, ["types_int"])
    assert "database 'gm_typo' does not exist" in p.stderr
    # a user with grants on some databases cannot tell missing from forbidden
    p, out = run_job(tmp_path, ["types_int"], url(srv, db="gm_typo"))
    assert_failed_cleanly(p, out, ["types_int"])
    assert "database 'gm_typo' not found, or user 'reader' has no privileges on it" in p.stderr
    p, out = run_job(tmp_path, ["types_int"], url(srv, db="gm"))
    assert p.returncode == 0, p.stderr


def test_fault_missing_table(srv, tmp_path):
    p, out = run_job(tmp_path, ["types_int", "nope"], url(srv))
    assert_failed_cleanly(p, out, ["types_int", "nope"])
    assert ("connection 'gm': MariaDB server 127.0.0.1:%d, database 'gm': table 'nope' not found; tables present: "
            "ctl, empty_t, inv, odd `name` x, secret, slow, snap, types_bin, types_int, types_num, types_text, "
            "types_time, v_int\n" % srv.port) in p.stderr, p.stderr
    assert not out.exists()  # checked before anything is written
    # another database, more tables than a message lists
    p, out = run_job(tmp_path, ["many.nope"], url(srv))
    assert_failed_cleanly(p, out, ["many.nope"])
    assert "table 'nope' not found in database 'many'; tables present in 'many': t00, t01" in p.stderr
    assert "t29 and 5 more" in p.stderr
    srv.sql("CREATE TABLE gm.nope (id INT); INSERT INTO gm.nope VALUES (7);")
    try:
        p, out = run_job(tmp_path, ["types_int", "nope"], url(srv))
        assert p.returncode == 0, p.stderr
        assert parse_csv((out / "nope.csv").read_bytes()) == [["id"], ["7"]]
    finally:
        srv.sql("DROP TABLE gm.nope")


def test_fault_no_select_privilege(srv, tmp_path):
    p, out = run_job(tmp_path, ["types_int", "secret"], url(srv), user="limited", password=LIMITED_PASSWORD)
    assert_failed_cleanly(p, out, ["types_int", "secret"])
    assert "user 'limited' may not read table 'secret'" in p.stderr
    assert "GRANT SELECT ON `gm`.`secret`" in p.stderr
    assert not out.exists()
    srv.sql("GRANT SELECT ON gm.secret TO 'limited'@'%'")
    try:
        p, out = run_job(tmp_path, ["types_int", "secret"], url(srv), out="out2", user="limited",
                         password=LIMITED_PASSWORD)
        assert p.returncode == 0, p.stderr
        assert parse_csv((out / "secret.csv").read_bytes()) == [["id", "v"], ["1", "classified"]]
    finally:
        srv.sql("REVOKE SELECT ON gm.secret FROM 'limited'@'%'")


def test_fault_unsupported_column_type(srv, tmp_path):
    srv.sql("CREATE TABLE gm.places (id INT, name VARCHAR(20), geo POINT, route LINESTRING);"
            "INSERT INTO gm.places VALUES (1, 'a', POINT(1, 2), LINESTRING(POINT(0, 0), POINT(1, 1)));")
    try:
        p, out = run_job(tmp_path, ["types_int", "places"], url(srv))
        assert_failed_cleanly(p, out, ["types_int", "places"])
        assert "table 'places': columns 'geo' (point), 'route' (linestring) have a type the native runner " \
               "cannot write as CSV" in p.stderr
        assert not out.exists()
        srv.sql("ALTER TABLE gm.places DROP COLUMN geo, DROP COLUMN route")
        p, out = run_job(tmp_path, ["types_int", "places"], url(srv))
        assert p.returncode == 0, p.stderr
        assert parse_csv((out / "places.csv").read_bytes()) == [["id", "name"], ["1", "a"]]
    finally:
        srv.sql("DROP TABLE gm.places")


def test_fault_connection_lost_mid_stream(srv, tmp_path):
    """The server side goes away while rows stream: the .part goes, finished tables stay."""
    dsf, creds = write_job(tmp_path, ["types_int", "slow"], url(srv))
    out = tmp_path / "out"
    proc = subprocess.Popen([AIRLOCK_BIN, "run-job", "--datasource", dsf, "--output", out, "--credentials", creds],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        victim = None
        while time.time() < deadline and not victim:
            rows = srv.query("SELECT ID, STATE, INFO FROM information_schema.PROCESSLIST WHERE USER = 'reader'")
            victim = next((r[0] for r in rows if r[2] and "`slow`" in r[2] and "LIMIT 0" not in r[2]
                           and r[1] == "User sleep"), None)
            time.sleep(0.05)
        assert victim, "the export of slow never started"
        assert (out / "slow.csv.part").exists()  # streaming into the .part
        srv.sql(f"KILL CONNECTION {victim}")
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    p = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert_failed_cleanly(p, out, ["slow"])
    assert "table 'slow': read failed after" in stderr and "connection to the server was lost" in stderr, stderr
    assert (out / "types_int.csv").exists()  # finished before the fault
    meta = json.loads((out / "ro-crate-metadata.json").read_text())
    action = [e for e in meta["@graph"] if e.get("@type") == "CreateAction"][0]
    assert action["actionStatus"] == "FailedActionStatus" and "read failed" in action["error"]
    srv.sql("UPDATE gm.ctl SET delay = 0")
    try:
        p, out = run_job(tmp_path, ["types_int", "slow"], url(srv), out="out2")
        assert p.returncode == 0, p.stderr
        rows = parse_csv((out / "slow.csv").read_bytes())
        assert len(rows) == 10001 and rows[-1] == ["10000", "0"]
    finally:
        srv.sql("UPDATE gm.ctl SET delay = 30")


def test_fault_url_with_password(srv, tmp_path):
    u = f"mariadb://reader:{PASSWORD}@127.0.0.1:{srv.port}/gm"
    p, out = run_job(tmp_path, ["types_int"], u)
    assert_failed_cleanly(p, out, ["types_int"])
    assert "connection url must not carry a password" in p.stderr
    assert "w0rd" not in p.stderr


def test_fault_missing_credential_key(srv, tmp_path):
    p, out = run_job(tmp_path, ["types_int"], url(srv), password=None)
    assert_failed_cleanly(p, out, ["types_int"])
    assert "needs a password: credentials.passwordKey 'DbPassword' is not among the job's credentials" in p.stderr


# -- TLS ---------------------------------------------------------------------------

def test_tls(srv, tmp_path):
    # the plain server offers no TLS: ssl=required refuses it
    p, out = run_job(tmp_path, ["types_int"], url(srv, query="?ssl=required"))
    assert_failed_cleanly(p, out, ["types_int"])
    assert "the url asks for ssl=required but the server does not offer TLS" in p.stderr
    tls = MariaDBServer(tmp_path / "tls", tls=True).start()
    try:
        tls.sql("CREATE DATABASE gm; CREATE TABLE gm.t (id INT); INSERT INTO gm.t VALUES (1);")
        tls.create_user("reader", PASSWORD, "GRANT SELECT ON gm.* TO {user}")
        p, out = run_job(tmp_path, ["t"], url(tls, query="?ssl=required"), out="o1")
        assert p.returncode == 0, p.stderr
        p, out = run_job(tmp_path, ["t"], url(tls, query=f"?ssl=verify_identity&sslca={tls.ca}"), out="o2")
        assert p.returncode == 0, p.stderr
        assert parse_csv((out / "t.csv").read_bytes()) == [["id"], ["1"]]
        p, out = run_job(tmp_path, ["t"], url(tls, query=f"?sslca={tls.other_ca}"), out="o3")
        assert_failed_cleanly(p, out, ["t"])
        assert "TLS connection failed" in p.stderr
    finally:
        tls.stop()


# -- memory stays flat ------------------------------------------------------------------

def peak_rss_kb(tmp, objects, srv, out):
    dsf, creds = write_job(tmp, objects, url(srv))
    p = subprocess.run(["/usr/bin/time", "-v", AIRLOCK_BIN, "run-job", "--datasource", dsf, "--output", tmp / out,
                        "--credentials", creds, "--quiet"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    el = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", p.stderr)
    assert m, p.stderr
    return int(m.group(1)), el.group(1) if el else "?"


def test_million_rows_flat_memory(srv, tmp_path):
    if not os.access("/usr/bin/time", os.X_OK):
        raise AssertionError("/usr/bin/time (Debian package time) is needed to measure peak RSS")
    srv.sql("CREATE TABLE big (id BIGINT PRIMARY KEY, name VARCHAR(64), amount DECIMAL(12,2), created DATETIME, "
            "note TEXT, score DOUBLE) ENGINE=InnoDB;"
            "INSERT INTO big SELECT seq, CONCAT('name ', seq, ', \"q\"'), seq / 100, "
            "'2024-01-01' + INTERVAL seq SECOND, IF(seq % 10 = 0, NULL, REPEAT('x', seq % 50)), seq * 1.1 "
            "FROM seq_1_to_1000000;", database="gm")
    try:
        small, _ = peak_rss_kb(tmp_path, ["types_int"], srv, "small")
        big, elapsed = peak_rss_kb(tmp_path, ["big"], srv, "big")
        data = (tmp_path / "big" / "big.csv").read_bytes()
        assert data.count(b"\r\n") == 1_000_001
        assert data.startswith(b'id,name,amount,created,note,score\r\n1,"name 1, ""q""",0.01,2024-01-01 00:00:01,x,1.1\r\n')
        print(f"\npeak RSS: 3-row table {small} kB, 1,000,000-row table {big} kB ({len(data)} bytes, {elapsed})")
        assert big < 32 * 1024, f"peak RSS {big} kB for 1M rows"
        assert big - small < 8 * 1024, f"memory grew with the table: {small} kB -> {big} kB"
    finally:
        srv.sql("DROP TABLE gm.big")
