"""End-to-end: `airlock run-job` (SQLite -> CSV + RO-Crate) and `airlock rocrate build`.

Uses the binary from $AIRLOCK_BIN (default bin/airlock). Needs the `rocrate`
Python library (pip install rocrate) to read the crate back.
"""
import base64
import csv
import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

AIRLOCK_BIN = os.environ.get("AIRLOCK_BIN", "bin/airlock")
SECRET = "hunter2-TOPSECRET-value"

ROWS = [
    (1, 0.5, "plain", "x", b"\x00\xff"),
    (-42, 1e20, 'a,b "quoted"', None, None),
    (2**63 - 1, 0.1 + 0.2, "line1\r\nline2\nline3", "", b""),
    (None, None, "Zoë café €", None, b"abc"),
    (7, -0.00012, "tab\there", "trailing space ", b"\x01" * 1000),
]


def run(*args, **kw):
    return subprocess.run([AIRLOCK_BIN, *map(str, args)], capture_output=True, text=True, **kw)


@pytest.fixture()
def source(tmp_path):
    db = tmp_path / "gm.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE patients(id INTEGER, score REAL, name TEXT, note TEXT, img BLOB)")
    con.executemany("INSERT INTO patients VALUES (?,?,?,?,?)", ROWS)
    con.execute("CREATE TABLE attendances(pid INTEGER, day TEXT)")
    con.executemany("INSERT INTO attendances VALUES (?,?)", [(i, f"2024-01-{i % 28 + 1:02d}") for i in range(1, 5001)])
    con.commit()
    con.close()
    ds = {
        "apiVersion": "xlscsde.nhs.uk/v1",
        "kind": "AnalyticsWorkspaceDataSource",
        "metadata": {"name": "example-data-source-1", "labels": {"xlscsde.nhs.uk/type": "import"}},
        "spec": {
            "type": "Import",
            "publisher": {"organisation": "NHS Greater Manchester ICB",
                          "contact": {"name": "Shaun Turner", "role": "AWMS Developer"}},
            "project": {"id": "d4e6"},
            "displayName": "NWSDE Sample Dataset - GM Attendances",
            "description": "Contains two sample tables.\n",
            "license": "This sample data may ONLY be used for testing.\n",
            "connections": [{"type": "sqlite", "name": "gm", "url": f"sqlite://{db}",
                             "credentials": {"userKey": "GmUser", "passwordKey": "GmPassword"}}],
            "objects": [{"table": {"name": "patients", "connection": "gm"}},
                        {"table": {"name": "attendances", "connection": "gm"}}],
        },
    }
    dsf = tmp_path / "ds.json"
    dsf.write_text(json.dumps(ds))
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"GmUser": "bob", "GmPassword": SECRET}))
    creds.chmod(0o600)
    return tmp_path, dsf, creds, ds


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def expected_cell(v):
    if v is None:
        return ""
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return str(v)


def test_run_job_csv_and_crate(source):
    tmp, dsf, creds, ds = source
    out = tmp / "out"
    r = run("run-job", "--datasource", dsf, "--output", out, "--credentials", creds)
    assert r.returncode == 0, r.stderr
    assert "patients: 5 rows" in r.stderr
    assert SECRET not in r.stderr + r.stdout

    raw = (out / "patients.csv").read_bytes()
    assert raw.startswith(b"id,score,name,note,img\r\n")
    rows = read_csv(out / "patients.csv")
    assert rows[0] == ["id", "score", "name", "note", "img"]
    assert len(rows) == len(ROWS) + 1
    for got, want in zip(rows[1:], ROWS):
        assert got[0] == expected_cell(want[0])
        if want[1] is None:
            assert got[1] == ""
        else:
            assert float(got[1]) == want[1]  # lossless REALs
        assert got[2] == want[2]
        assert got[3] == expected_cell(want[3])
        assert got[4] == expected_cell(want[4])
    att = read_csv(out / "attendances.csv")
    assert len(att) == 5001 and att[1] == ["1", "2024-01-02"]
    assert not list(out.glob("*.part"))

    meta_text = (out / "ro-crate-metadata.json").read_text()
    assert SECRET not in meta_text and "GmPassword" not in meta_text and str(tmp) not in meta_text

    from rocrate.rocrate import ROCrate
    crate = ROCrate(str(out))
    assert crate.name == ds["spec"]["displayName"]
    root = crate.root_dataset
    assert root["description"] == "Contains two sample tables."
    ids = sorted(e.id for e in crate.data_entities)
    assert ids == ["attendances.csv", "patients.csv"]
    for e in crate.data_entities:
        data = (out / e.id).read_bytes()
        assert e["sha256"] == hashlib.sha256(data).hexdigest()
        assert e["contentSize"] == str(len(data))
        assert e["encodingFormat"] == "text/csv"
    pat = crate.dereference("patients.csv")
    assert pat["airlock:rowCount"] == 5
    assert pat["airlock:columns"] == ["id", "score", "name", "note", "img"]
    lic = crate.dereference("#license")
    assert "ONLY be used for testing" in lic["description"]
    pub = crate.dereference("#publisher")
    assert pub["name"] == "NHS Greater Manchester ICB"
    assert crate.dereference("#contact")["contactType"] == "AWMS Developer"
    assert crate.dereference("#project-d4e6")["identifier"] == "d4e6"
    actions = [e for e in crate.contextual_entities if e.type == "CreateAction"]
    assert len(actions) == 1
    act = actions[0]
    assert act["actionStatus"] == "CompletedActionStatus"
    assert act["startTime"] <= act["endTime"]
    meta = json.loads(meta_text)
    graph = {e["@id"]: e for e in meta["@graph"]}
    assert graph["#runner"]["name"] == "airlock-native-runner"
    assert sorted(r["@id"] for r in graph[act.id]["result"]) == ids
    assert "gm.db" in graph["#source"]["name"]
    assert graph["ro-crate-metadata.json"]["conformsTo"]["@id"] == "https://w3id.org/ro/crate/1.1"


def test_run_job_errors(source):
    tmp, dsf, creds, ds = source
    out = tmp / "out"
    # missing table: names the tables present, writes nothing
    bad = json.loads(json.dumps(ds))
    bad["spec"]["objects"].append({"table": {"name": "nope", "connection": "gm"}})
    f = tmp / "bad.json"
    f.write_text(json.dumps(bad))
    r = run("run-job", "--datasource", f, "--output", out)
    assert r.returncode == 1
    assert "table 'nope' not found in gm.db; tables present: attendances, patients" in r.stderr
    assert not out.exists()
    # unsupported type, url with a password never echoed
    bad = json.loads(json.dumps(ds))
    bad["spec"]["connections"][0].update(type="oracle", url=f"https://u:{SECRET}@x.example/db")
    f.write_text(json.dumps(bad))
    r = run("run-job", "--datasource", f, "--output", out)
    assert r.returncode == 1 and "connection type 'oracle' is not supported" in r.stderr
    assert SECRET not in r.stderr
    # credentials readable by others: refused
    creds.chmod(0o644)
    r = run("run-job", "--datasource", dsf, "--output", out, "--credentials", creds)
    assert r.returncode == 1 and "chmod 600" in r.stderr and SECRET not in r.stderr
    assert not out.exists()
    # usage
    assert run("run-job", "--output", out).returncode == 2
    assert run("run-job", "--datasource", dsf, "--output", out, "--format", "parquet").returncode == 2


def test_yaml_datasource(source):
    tmp, dsf, creds, ds = source
    spec = ds["spec"]
    y = tmp / "ds.yaml"
    y.write_text(f"""apiVersion: xlscsde.nhs.uk/v1
kind: AnalyticsWorkspaceDataSource
metadata:
  name: example-data-source-1
spec:
  type: Import
  displayName: From YAML
  description: |
    A YAML datasource.
  license: |
    Testing only.
  publisher:
    organisation: Org
    contact:
      name: A
      role: B
  project:
    id: d4e6
  connections:
  - type: sqlite
    name: gm
    url: {spec['connections'][0]['url']}
  objects:
  - table:
      name: attendances
      connection: gm
""")
    out = tmp / "yout"
    r = run("run-job", "--datasource", y, "--output", out)
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "ro-crate-metadata.json").read_text())
    assert {e["@id"]: e for e in meta["@graph"]}["./"]["name"] == "From YAML"


def test_rocrate_build_any_directory(source):
    tmp, dsf, creds, ds = source
    d = tmp / "upload"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "t.csv").write_bytes(b'a,b\r\n1,"x\r\ny"\r\n2,z\r\n')
    (d / "notes.txt").write_text("hello\n")
    (d / ".partial").write_text("skipped")
    r = run("rocrate", "build", d, "--datasource", dsf)
    assert r.returncode == 0, r.stderr
    from rocrate.rocrate import ROCrate
    crate = ROCrate(str(d))
    assert sorted(e.id for e in crate.data_entities) == ["notes.txt", "sub/t.csv"]
    t = crate.dereference("sub/t.csv")
    assert t["airlock:rowCount"] == 2  # the quoted CRLF does not start a record
    assert t["airlock:columns"] == ["a", "b"]
    assert crate.dereference("notes.txt")["encodingFormat"] == "text/plain"
    # running again is stable apart from datePublished
    first = json.loads((d / "ro-crate-metadata.json").read_text())
    assert run("rocrate", "build", d, "--datasource", dsf).returncode == 0
    second = json.loads((d / "ro-crate-metadata.json").read_text())
    for m in (first, second):
        for e in m["@graph"]:
            e.pop("datePublished", None)
    assert first == second
    # a symlink is refused
    (d / "link").symlink_to("/etc/passwd")
    r = run("rocrate", "build", d)
    assert r.returncode == 1 and "symbolic link" in r.stderr


def test_full_disk_fails_cleanly_and_retry_succeeds(tmp_path):
    """The output volume fills up mid-table: exit 1 with a message that says
    the volume is full, no <table>.csv and no .part left; with room, the same
    job succeeds. The small volume is a 256 KiB tmpfs mounted in a private
    mount namespace (unshare; as an unprivileged user too, in a user
    namespace)."""
    db = tmp_path / "big.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t(id INTEGER, note TEXT)")
    con.executemany("INSERT INTO t VALUES(?, ?)", [(i, "x" * 100) for i in range(20000)])  # ~2 MB of CSV
    con.commit()
    con.close()
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"spec": {"type": "Import", "displayName": "Full disk",
                                       "connections": [{"type": "sqlite", "name": "src", "url": f"sqlite://{db}"}],
                                       "objects": [{"table": {"name": "t", "connection": "src"}}]}}))
    mnt = tmp_path / "small"
    mnt.mkdir()
    bin_path = os.path.abspath(AIRLOCK_BIN)
    script = (f'mount -t tmpfs -o size=256k tmpfs "{mnt}" || exit 99; '
              f'"{bin_path}" run-job --quiet --datasource "{ds}" --output "{mnt}/out"; rc=$?; '
              f'ls -A "{mnt}/out"; exit $rc')
    p = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 99, f"cannot mount a tmpfs in a private namespace: {p.stderr}"
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "volume is full" in p.stderr and "No space left on device" in p.stderr, p.stderr
    left = p.stdout.split()
    assert "t.csv" not in left and not any(n.endswith(".part") for n in left), left
    # With room, the same job succeeds.
    out = tmp_path / "roomy"
    r = run("run-job", "--quiet", "--datasource", ds, "--output", out)
    assert r.returncode == 0, r.stderr
    assert len(read_csv(out / "t.csv")) == 20001
