"""End-to-end: `airlock run-job` with a `databricks` connection.

Databricks cannot run here: these tests run the client against
databricks_fixture.py, a local HTTPS server that speaks the documented SQL
Statement Execution API 2.0 and OAuth M2M token endpoint (see its
docstring). They prove the client follows the documented protocol, not that
the real service behaves exactly like the fixture.
"""
import json
import os
import subprocess
import uuid

import pytest

from databricks_fixture import DatabricksFixture

AIRLOCK_BIN = os.environ.get("AIRLOCK_BIN", "bin/airlock")
PAT = "dapi-PAT-0123456789abcdef-SECRET"
CLIENT_ID = str(uuid.UUID("6f1d6a3e-9a8b-4c2d-8e7f-0a1b2c3d4e5f"))
CLIENT_SECRET = "dose-OAUTH-secret-value-98765"

COLUMNS = [("id", "INT", "int"), ("name", "STRING", "string"), ("score", "DECIMAL", "decimal(10,2)"),
           ("born", "DATE", "date"), ("seen", "TIMESTAMP", "timestamp"), ("flag", "BOOLEAN", "boolean"),
           ("img", "BINARY", "binary"), ("tags", "ARRAY", "array<string>"), ("note", "STRING", "string")]
ROWS = [
    ["1", "plain", "12.50", "1980-01-02", "2024-03-04T05:06:07.000Z", "true", "AP8=", '["a","b"]', "x"],
    ["2", 'a,b "quoted"', None, None, None, "false", None, None, ""],
    ["3", "line1\r\nline2\nline3", "-0.01", "2000-02-29", "2000-02-29T23:59:59.999Z", "true", "", "[]", None],
    ["4", "Zoë café € 😀 中文", "0.00", "1970-01-01", "1970-01-01T00:00:00.000Z", None, "YWJj", '["x,y"]',
     "tab\there"],
    ["5", "back\\slash / and \u0001 control", "99999999.99", "9999-12-31", None, "false", "AAEC", None, " sp "],
    [None, None, None, None, None, None, None, None, None],
    ["7", "", "1.00", "2024-01-01", "2024-01-01T00:00:00.000Z", "true", "/w==", '["q\\"uote"]', "last"],
]


def csv_field(v):
    if v is None:
        return ""
    if v == "" or any(c in v for c in ',"\r\n'):
        return '"' + v.replace('"', '""') + '"'
    return v


def expected_csv(columns, rows):
    lines = [",".join(c[0] for c in columns)] + [",".join(csv_field(v) for v in r) for r in rows]
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.fixture()
def fx(tmp_path):
    # One poll to SUCCEEDED keeps the tests quick; the first test walks
    # PENDING -> RUNNING -> SUCCEEDED.
    f = DatabricksFixture(tmp_path, pending_polls=0, running_polls=1)
    f.pats.add(PAT)
    f.clients[CLIENT_ID] = CLIENT_SECRET
    f.add_table("main.default.patients", COLUMNS, ROWS)
    f.add_table("main.default.attendances", [("pid", "BIGINT", "bigint"), ("day", "DATE", "date")],
                [[str(i), f"2024-01-{i % 28 + 1:02d}"] for i in range(1, 11)])
    f.add_table("main.default.empty", [("a", "INT", "int")], [])
    f.add_table("gold.gm.secret_table", [("a", "INT", "int")], [["1"]])
    yield f
    f.stop()


def job(tmp, url, names, creds):
    ds = {
        "apiVersion": "xlscsde.nhs.uk/v1",
        "kind": "AnalyticsWorkspaceDataSource",
        "metadata": {"name": "example-data-source-1"},
        "spec": {
            "type": "Import",
            "publisher": {"organisation": "NHS Greater Manchester ICB",
                          "contact": {"name": "Shaun Turner", "role": "AWMS Developer"}},
            "project": {"id": "d4e6"},
            "displayName": "GM Attendances",
            "description": "Two sample tables.",
            "license": "Testing only.",
            "connections": [{"type": "databricks", "name": "databricks", "url": url,
                             "credentials": {"userKey": "DatabricksUsername", "passwordKey": "DatabricksPassword"}}],
            "objects": [{"table": {"name": n, "connection": "databricks"}} for n in names],
        },
    }
    dsf = tmp / "ds.json"
    dsf.write_text(json.dumps(ds))
    cf = tmp / "creds.json"
    cf.write_text(json.dumps(creds))
    cf.chmod(0o600)
    return dsf, cf


def run_job(fx, dsf, cf, out):
    env = dict(os.environ, AIRLOCK_CA_FILE=str(fx.cert))
    env.pop("AIRLOCK_ALLOW_HTTP", None)
    return subprocess.run([AIRLOCK_BIN, "run-job", "--datasource", dsf, "--output", out, "--credentials", cf],
                          capture_output=True, text=True, env=env, timeout=300)


def http_path(fx):
    return f"https://{fx.host}/sql/1.0/warehouses/{fx.warehouse}"


def no_secret(*texts):
    for t in texts:
        for s in (PAT, CLIENT_SECRET, "dbx-oauth-", "sig=", fx_key_marker):
            assert s not in t, s


fx_key_marker = "x-fixture-key"


def test_pat_types_nulls_and_chunks(fx, tmp_path):
    fx.pending_polls = fx.running_polls = 1
    dsf, cf = job(tmp_path, http_path(fx), ["patients", "main.default.attendances", "empty"],
                  {"DatabricksUsername": "engineer@example.org", "DatabricksPassword": PAT})
    out = tmp_path / "out"
    r = run_job(fx, dsf, cf, out)
    assert r.returncode == 0, r.stderr
    assert (out / "patients.csv").read_bytes() == expected_csv(COLUMNS, ROWS)
    att = (out / "main.default.attendances.csv").read_bytes().decode().split("\r\n")
    assert att[0] == "pid,day" and att[1] == "1,2024-01-02" and len(att) == 12
    assert (out / "empty.csv").read_bytes() == b"a\r\n"
    assert not list(out.glob("*.part"))

    # 7 rows in chunks of 3: three pre-signed links, each fetched without
    # the Authorization header and with the link's own http_headers.
    storage = [q for q in fx.requests if q["path"].startswith("/storage/")]
    assert len(storage) == 3 + 4 + 0
    assert all(q["auth"] is None and q["headers"].get("x-fixture-key") == fx.link_key for q in storage)
    api = [q for q in fx.requests if q["path"].startswith("/api/")]
    assert all(q["auth"] == "Bearer " + PAT for q in api)
    chunk_gets = [q for q in api if "/result/chunks/" in q["path"]]
    assert len(chunk_gets) == 2 + 3
    polls = [q for q in api if q["method"] == "GET" and "/result/" not in q["path"]]
    assert len(polls) >= 2 * 6  # PENDING -> RUNNING -> SUCCEEDED for 3 checks + 3 exports
    sent = [s["req"] for s in fx.statements.values()]
    assert {s["disposition"] for s in sent} == {"INLINE", "EXTERNAL_LINKS"}
    assert {s["format"] for s in sent} == {"JSON_ARRAY"}
    assert "SELECT * FROM `main`.`default`.`attendances`" in {s["statement"] for s in sent}
    assert "SELECT * FROM `patients` LIMIT 0" in {s["statement"] for s in sent}

    meta_text = (out / "ro-crate-metadata.json").read_text()
    no_secret(r.stderr, r.stdout, meta_text)
    meta = json.loads(meta_text)
    files = {e["@id"]: e for e in meta["@graph"] if e.get("@type") == "File"}
    p = files["patients.csv"]
    assert p["airlock:rowCount"] == 7
    assert p["airlock:columns"] == [c[0] for c in COLUMNS]
    src = [e for e in meta["@graph"] if e.get("@id") == "#source"][0]
    assert src["airlock:hosts"] == ["127.0.0.1"]
    from rocrate.rocrate import ROCrate
    crate = ROCrate(str(out))
    assert {e.id for e in crate.data_entities} == {"patients.csv", "main.default.attendances.csv", "empty.csv"}


def test_oauth_m2m(fx, tmp_path):
    dsf, cf = job(tmp_path, f"https://{fx.host}/path/to/datasource.location?warehouse_id={fx.warehouse}",
                  ["patients", "attendances"],
                  {"DatabricksUsername": CLIENT_ID, "DatabricksPassword": CLIENT_SECRET})
    out = tmp_path / "out"
    r = run_job(fx, dsf, cf, out)
    assert r.returncode == 0, r.stderr
    assert (out / "patients.csv").read_bytes() == expected_csv(COLUMNS, ROWS)
    assert fx.token_requests == 1  # cached across every call
    tokens = {q["auth"] for q in fx.requests if q["path"].startswith("/api/")}
    assert len(tokens) == 1 and tokens.pop().startswith("Bearer dbx-oauth-")
    token_calls = [q for q in fx.requests if q["path"] == "/oidc/v1/token"]
    assert token_calls[0]["auth"].startswith("Basic ")
    no_secret(r.stderr, (out / "ro-crate-metadata.json").read_text())


def test_oauth_bad_secret(fx, tmp_path):
    dsf, cf = job(tmp_path, http_path(fx), ["patients"],
                  {"DatabricksUsername": CLIENT_ID, "DatabricksPassword": "wrong-" + CLIENT_SECRET})
    r = run_job(fx, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "invalid_client" in r.stderr and "DatabricksUsername" in r.stderr and "DatabricksPassword" in r.stderr
    no_secret(r.stderr)
    assert not (tmp_path / "out").exists()


def test_bad_token(fx, tmp_path):
    dsf, cf = job(tmp_path, http_path(fx), ["patients"],
                  {"DatabricksUsername": "engineer@example.org", "DatabricksPassword": "dapi-wrong-" + PAT})
    r = run_job(fx, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "Invalid access token" in r.stderr and "DatabricksPassword" in r.stderr, r.stderr
    no_secret(r.stderr)
    assert not (tmp_path / "out").exists()


def test_missing_credentials(fx, tmp_path):
    dsf, cf = job(tmp_path, http_path(fx), ["patients"], {})
    r = run_job(fx, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "credentials.passwordKey 'DatabricksPassword'" in r.stderr, r.stderr


def test_table_not_found_lists_tables(fx, tmp_path):
    dsf, cf = job(tmp_path, http_path(fx), ["patients", "patiens"],
                  {"DatabricksPassword": PAT})
    r = run_job(fx, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "TABLE_OR_VIEW_NOT_FOUND" in r.stderr, r.stderr
    assert "tables present in the default schema: attendances, empty, patients" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
    dsf, cf = job(tmp_path, http_path(fx), ["gold.gm.nope"], {"DatabricksPassword": PAT})
    r = run_job(fx, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "tables present in gold.gm: secret_table" in r.stderr, r.stderr


def test_statement_failed_and_permission_denied(fx, tmp_path):
    fx.failures["main.default.patients"] = ("BAD_REQUEST", "[DIVIDE_BY_ZERO] Division by zero. SQLSTATE: 22012",
                                            "22012")
    fx.failures["gold.gm.secret_table"] = (
        "PERMISSION_DENIED", "[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User does not have SELECT on "
        "Table 'gold.gm.secret_table'. SQLSTATE: 42501", "42501")
    dsf, cf = job(tmp_path, http_path(fx), ["patients"], {"DatabricksPassword": PAT})
    r = run_job(fx, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "the statement failed on Databricks: [DIVIDE_BY_ZERO] Division by zero" in r.stderr, r.stderr
    dsf, cf = job(tmp_path, http_path(fx), ["gold.gm.secret_table"], {"DatabricksPassword": PAT})
    r = run_job(fx, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "INSUFFICIENT_PERMISSIONS" in r.stderr, r.stderr
    no_secret(r.stderr)


def test_local_failure_cancels_and_leaves_no_file(fx, tmp_path):
    # Chunk 1 of patients is cut short: the reader fails, the statement is
    # canceled, and no patients.csv (or .part) remains.
    fx.broken_chunks["main.default.patients"] = {1: b'[["4","x"'}
    dsf, cf = job(tmp_path, http_path(fx), ["attendances", "patients"], {"DatabricksPassword": PAT})
    out = tmp_path / "out"
    r = run_job(fx, dsf, cf, out)
    assert r.returncode == 1
    assert "result chunk 1" in r.stderr, r.stderr
    assert (out / "attendances.csv").exists()
    assert not (out / "patients.csv").exists() and not (out / "patients.csv.part").exists()
    exported = [s["id"] for s in fx.statements.values()
                if s["req"].get("disposition") == "EXTERNAL_LINKS" and s.get("table") == "main.default.patients"]
    assert exported and exported[0] in fx.cancels
    meta = json.loads((out / "ro-crate-metadata.json").read_text())
    action = [e for e in meta["@graph"] if e.get("@type") == "CreateAction"][0]
    assert action["actionStatus"].endswith("FailedActionStatus")


def test_expired_link_is_fetched_again(fx, tmp_path):
    fx.expire_links_once = True
    dsf, cf = job(tmp_path, http_path(fx), ["patients"], {"DatabricksPassword": PAT})
    out = tmp_path / "out"
    r = run_job(fx, dsf, cf, out)
    assert r.returncode == 0, r.stderr
    assert (out / "patients.csv").read_bytes() == expected_csv(COLUMNS, ROWS)
    chunk0 = [q for q in fx.requests if q["path"].endswith("/result/chunks/0")]
    assert len(chunk0) == 1  # the expired first link was resolved again


def test_url_without_warehouse_and_unknown_warehouse(fx, tmp_path):
    # The seed's own example url names no SQL warehouse.
    dsf, cf = job(tmp_path, f"https://{fx.host}/path/to/datasource.location", ["patients"],
                  {"DatabricksPassword": PAT})
    r = run_job(fx, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "names no SQL warehouse" in r.stderr and "/sql/1.0/warehouses/" in r.stderr, r.stderr
    dsf, cf = job(tmp_path, f"https://{fx.host}/sql/1.0/warehouses/0000000000000000", ["patients"],
                  {"DatabricksPassword": PAT})
    r = run_job(fx, dsf, cf, tmp_path / "out")
    assert r.returncode == 1
    assert "HTTP 404" in r.stderr and "does not exist" in r.stderr, r.stderr
