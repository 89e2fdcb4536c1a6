"""The Import flow end to end, as its users do it: a data engineer applies the
seed's YAML, the airlock collects the tables by itself, checks them, an
approver approves the exact manifest, and the data is published read-only."""
import csv
import gzip
import io
import json
import os
import stat
import subprocess
import time
from pathlib import Path

from rocrate.rocrate import ROCrate

from conftest import datasource_yaml, make_source_db


def staging_dir(airlock, ds):
    return airlock.data / "staging" / f"ds-{ds['metadata']['uid']}"


def test_full_import_flow(airlock, workspace, tmp_path):
    db = make_source_db(tmp_path / "source.db")
    (tmp_path / "ds.yaml").write_text(datasource_yaml("example-data-source-1", db))

    out = airlock.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", workspace, user="eng").stdout
    assert "example-data-source-1 created" in out
    waited = airlock.cli("wait", "datasource", "example-data-source-1", "--for", "stage=AwaitingApproval",
                         "--timeout", "60", user="eng")
    assert "stage=Collecting" in waited.stdout and "stage=AwaitingApproval" in waited.stdout

    ds = airlock.ds("example-data-source-1")
    st = ds["status"]
    assert st["dataState"] == "Completed"
    assert st["requestedBy"] == "eng"
    assert st["observedGeneration"] == ds["metadata"]["generation"]
    files = {f["path"]: f for f in st["manifest"]["files"]}
    assert set(files) == {"patients.csv", "attendances.csv", "ro-crate-metadata.json"}
    assert st["manifest"]["fileCount"] == 3
    assert {c["name"]: c["result"] for c in st["checks"]}["malware"] == "not-scanned"
    assert all(c["result"] in ("passed", "not-scanned") for c in st["checks"])

    # The collected CSV is the source table, exactly (RFC 4180, header, NULL as empty).
    stage_dir = staging_dir(airlock, ds)
    with open(stage_dir / "patients.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "name", "dob", "weight"]
    assert len(rows) == 101
    assert rows[7][1] == 'Pat "7", Ñoño\nline2'
    assert rows[5][2] == ""

    # RO-Crate metadata validates with the rocrate library and names no secret.
    crate = ROCrate(str(stage_dir))
    assert crate.name == "NWSDE Data Engineering Team Sample Dataset - GM Attendances"
    names = {e.id for e in crate.get_entities()}
    assert "patients.csv" in names and "attendances.csv" in names
    meta = json.loads((stage_dir / "ro-crate-metadata.json").read_text())
    assert any(e.get("@type") == "CreateAction" for e in meta["@graph"])

    # Detail view shows the manifest digest an approver approves.
    shown = airlock.cli("get", "datasource", "example-data-source-1", user="appr").stdout
    assert st["manifest"]["digest"] in shown

    # The requester cannot approve; an approver can.
    r = airlock.cli("approve", "example-data-source-1", user="eng", check=False)
    assert r.returncode == 1
    out = airlock.cli("approve", "example-data-source-1", "--digest", st["manifest"]["digest"], user="appr").stdout
    assert "approved" in out
    ds = airlock.wait_stage("example-data-source-1", "Published")
    published = Path(ds["status"]["publishedPath"])
    assert published.parent == airlock.data / "workspaces" / workspace
    for name, entry in files.items():
        p = published / name
        assert oct(stat.S_IMODE(p.stat().st_mode)) == "0o444"
        assert p.stat().st_size == entry["size"]
    assert not stage_dir.exists(), "staging copy is removed once published"
    assert ds["status"]["conditions"]

    # The binding the seed asks for exists, and the audit log tells the story.
    r = airlock.api("GET", "/api/v1/databindings", user="eng")
    assert [b["spec"] for b in r.json()["items"]] == [
        {"workspace": workspace, "datasource": "example-data-source-1"}]
    actions = [(a["actor"]["type"], a["actor"]["name"], a["action"]) for a in airlock.audit()
               if a.get("object", {}).get("kind") == "AnalyticsWorkspaceDataSource"]
    assert actions == [
        ("user", "eng", "submit"),
        ("system", "airlock-operator", "collect-start"),
        ("system", "airlock-operator", "collect-succeeded"),
        ("system", "airlock-operator", "checks-passed"),
        ("user", "appr", "approve"),
        ("system", "airlock-operator", "publish"),
    ]
    verify = airlock.cli("audit", "verify", user="admin")
    assert "chain intact" in verify.stdout
    # No secret or credential anywhere in the audit log.
    assert "password" not in json.dumps(airlock.audit()).lower()


def test_rejection_purges_staging(airlock, workspace, tmp_path):
    db = make_source_db(tmp_path / "source.db")
    (tmp_path / "ds.yaml").write_text(datasource_yaml("to-reject", db))
    airlock.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", workspace, user="eng")
    ds = airlock.wait_stage("to-reject", "AwaitingApproval")
    assert staging_dir(airlock, ds).exists()
    r = airlock.cli("reject", "to-reject", user="appr", check=False)
    assert r.returncode == 2 and "--reason" in r.stderr
    airlock.cli("reject", "to-reject", "--reason", "contains identifiable columns", user="appr")
    ds = airlock.wait_stage("to-reject", "Purged")
    assert ds["status"]["message"] == "contains identifiable columns"
    assert not staging_dir(airlock, ds).exists()
    assert not (airlock.data / "workspaces" / workspace / "to-reject").exists()


def test_failed_import_names_reason_and_retry_succeeds(airlock, workspace, tmp_path):
    db = tmp_path / "source.db"
    make_source_db(db)
    (tmp_path / "ds.yaml").write_text(datasource_yaml("needs-fix", db, tables=("patients", "visits")))
    airlock.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", workspace, user="eng")
    deadline = time.time() + 60
    while time.time() < deadline:
        ds = airlock.ds("needs-fix")
        if ds["status"].get("stage") == "Failed":
            break
        time.sleep(0.1)
    assert ds["status"]["dataState"] == "Failed"
    assert "visits" in ds["status"]["message"]
    assert not list(staging_dir(airlock, ds).glob("*.part")), "no partial file left"
    assert not (staging_dir(airlock, ds) / "visits.csv").exists()
    # The data engineer fixes the source; retry collects it.
    import sqlite3
    con = sqlite3.connect(db)
    con.execute("create table visits(id integer)")
    con.execute("insert into visits values (1)")
    con.commit()
    con.close()
    airlock.cli("retry", "needs-fix", user="eng")
    ds = airlock.wait_stage("needs-fix", "AwaitingApproval")
    assert ds["status"]["attempt"] == 2


def test_missing_credential_fails_with_actionable_reason(airlock, workspace, tmp_path):
    db = make_source_db(tmp_path / "source.db")
    creds = "    credentials:\n      userKey: SourceUser\n      passwordKey: SourcePassword\n"
    text = datasource_yaml("with-creds", db).replace("    url: sqlite://", creds + "    url: sqlite://")
    (tmp_path / "ds.yaml").write_text(text)
    airlock.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", workspace, user="eng")
    deadline = time.time() + 30
    while time.time() < deadline:
        ds = airlock.ds("with-creds")
        if ds["status"].get("stage") == "Failed":
            break
        time.sleep(0.1)
    assert "airlock secret set SourceUser" in ds["status"]["message"]

    # Set the credentials, retry: the job gets them in a private file that is gone afterwards.
    airlock.cli("secret", "set", "SourceUser", user="eng", input="reader\n")
    airlock.cli("secret", "set", "SourcePassword", user="eng", input="s3cr3t-Value-XYZ\n")
    assert airlock.cli("secret", "list", user="eng").stdout.split() == ["SourcePassword", "SourceUser"]
    airlock.cli("retry", "with-creds", user="eng")
    airlock.wait_stage("with-creds", "AwaitingApproval")
    secrets_dir = airlock.data / "state" / "secrets"
    assert not any("credentials" in p.name for p in secrets_dir.iterdir())
    # The secret value is nowhere in logs, status or audit.
    everything = airlock.log.read_text() + json.dumps(airlock.ds("with-creds")) + json.dumps(airlock.audit())
    for job_log in (airlock.data / "state" / "jobs").rglob("log"):
        everything += job_log.read_text()
    assert "s3cr3t-Value-XYZ" not in everything


def test_gzip_format_and_runner_choice(airlock, workspace, tmp_path):
    """spec.format csv.gz: the runner writes <table>.csv.gz, which reads back as
    the same CSV, and the RO-Crate still knows rows and columns. spec.runner
    dlt on an airlock without the dlt runner set up fails once, saying how."""
    db = make_source_db(tmp_path / "source.db")
    text = datasource_yaml("gz-data", db).replace("  connections:", "  format: csv.gz\n  connections:")
    (tmp_path / "gz.yaml").write_text(text)
    airlock.cli("apply", "-f", tmp_path / "gz.yaml", "--workspace", workspace, user="eng")
    ds = airlock.wait_stage("gz-data", "AwaitingApproval")
    files = {f["path"] for f in ds["status"]["manifest"]["files"]}
    assert files == {"patients.csv.gz", "attendances.csv.gz", "ro-crate-metadata.json"}, files
    stage = staging_dir(airlock, ds)
    with gzip.open(stage / "patients.csv.gz", "rt", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "name", "dob", "weight"] and len(rows) == 101
    assert rows[7][1] == 'Pat "7", Ñoño\nline2'
    meta = json.loads((stage / "ro-crate-metadata.json").read_text())
    ent = {e["@id"]: e for e in meta["@graph"]}["patients.csv.gz"]
    assert ent["airlock:rowCount"] == 100
    assert ent["airlock:columns"] == ["id", "name", "dob", "weight"]
    assert ent["airlock:columnTypes"] == ["INTEGER", "TEXT", "TEXT", "REAL"]

    text = datasource_yaml("dlt-data", db).replace("  connections:", "  runner: dlt\n  connections:")
    (tmp_path / "dlt.yaml").write_text(text)
    airlock.cli("apply", "-f", tmp_path / "dlt.yaml", "--workspace", workspace, user="eng")
    ds = airlock.wait_stage("dlt-data", "Failed")
    assert "scripts/dlt-venv.sh" in ds["status"]["message"], ds["status"]
