"""The audit log is hash-chained; an edited, removed or reordered record is
detected and named, on the server and in an exported file."""
import json
import sqlite3

from conftest import datasource_yaml, make_source_db


def populate(a, workspace, tmp_path):
    db = make_source_db(tmp_path / "s.db")
    (tmp_path / "ds.yaml").write_text(datasource_yaml("audited", db))
    a.cli("apply", "-f", tmp_path / "ds.yaml", "--workspace", workspace, user="eng")
    a.wait_stage("audited", "AwaitingApproval")


def test_audit_list_and_verify(airlock, workspace, tmp_path):
    populate(airlock, workspace, tmp_path)
    out = airlock.cli("audit", "list").stdout
    assert "airlock-operator" in out and "collect-start" in out
    export = airlock.cli("audit", "export").stdout
    lines = [l for l in export.splitlines() if l]
    recs = [json.loads(l) for l in lines]
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    assert all(r["prev"] == p["hash"] for p, r in zip(recs, recs[1:]))
    f = tmp_path / "audit.jsonl"
    f.write_text(export)
    assert "chain intact" in airlock.cli("audit", "verify", "--file", f).stdout

    # Offline tampering of the export: edit, remove, reorder.
    edited = list(lines)
    r = json.loads(edited[3]); r["actor"]["name"] = "mallory"; edited[3] = json.dumps(r)
    removed = lines[:4] + lines[5:]
    reordered = lines[:2] + [lines[3], lines[2]] + lines[4:]
    for variant, needle in ((edited, "record 4"), (removed, "5"), (reordered, "3")):
        f.write_text("\n".join(variant) + "\n")
        p = airlock.cli("audit", "verify", "--file", f, check=False)
        assert p.returncode == 1, variant
        assert needle in p.stderr, p.stderr


def test_tampered_database_is_detected(airlock, workspace, tmp_path):
    populate(airlock, workspace, tmp_path)
    airlock.stop()
    con = sqlite3.connect(airlock.data / "airlock.db")
    seq, record = con.execute("select seq, record from audit where seq = 3").fetchone()
    rec = json.loads(record)
    rec["reason"] = "nothing to see here"
    con.execute("update audit set record = ? where seq = ?", (json.dumps(rec), seq))
    con.commit()
    con.close()
    airlock.start()
    p = airlock.cli("audit", "verify", check=False)
    assert p.returncode == 1
    assert "record 3" in p.stderr and "edited" in p.stderr

    airlock.stop()
    con = sqlite3.connect(airlock.data / "airlock.db")
    con.execute("update audit set record = ? where seq = 3", (record,))
    con.execute("delete from audit where seq = 5")
    con.commit()
    con.close()
    airlock.start()
    p = airlock.cli("audit", "verify", check=False)
    assert p.returncode == 1 and "5" in p.stderr, p.stderr
