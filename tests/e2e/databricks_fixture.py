"""A stand-in for a Databricks workspace, for testing airlock's `databricks` source.

Databricks cannot run here, so this threaded HTTPS server speaks the parts of
the documented protocol the client uses (docs.databricks.com, "Statement
Execution API 2.0" and "OAuth machine-to-machine"):

- POST /oidc/v1/token: client credentials grant (HTTP basic auth with the
  service principal's application id and OAuth secret, grant_type=
  client_credentials, scope=all-apis) -> {"access_token", "token_type",
  "expires_in", "scope"}; a bad client -> 401 {"error": "invalid_client", ...}.
- POST /api/2.0/sql/statements {warehouse_id, statement, wait_timeout,
  on_wait_timeout, disposition INLINE|EXTERNAL_LINKS, format JSON_ARRAY, catalog?,
  schema?} -> {"statement_id", "status": {"state": "PENDING"}}; request
  fields are validated as the real service documents them.
- GET /api/2.0/sql/statements/{id}: PENDING -> RUNNING -> SUCCEEDED (one step
  per poll, configurable), or FAILED with status.error {error_code, message}
  and status.sql_state; SUCCEEDED carries the manifest (format, schema.columns
  [{name, position, type_name, type_text}], total_chunk_count, chunks,
  total_row_count, truncated) and the first chunk's result.
- GET /api/2.0/sql/statements/{id}/result/chunks/{n}: the result of chunk n.
- POST /api/2.0/sql/statements/{id}/cancel.
- EXTERNAL_LINKS point back at this server (/storage/...), like pre-signed
  cloud storage urls: they carry their own signature, come with http_headers
  the client must send, and refuse a request that also has an Authorization
  header (as S3 / Azure Blob do).
- Errors have the real service's JSON shape {"error_code": ..., "message": ...}.

The SQL it understands is what the client sends: SELECT * FROM <name> [LIMIT 0]
and SHOW TABLES [IN <schema>], names quoted with backticks.
"""
import base64
import datetime
import hashlib
import http.server
import json
import re
import secrets
import shutil
import ssl
import subprocess
import threading
import urllib.parse
import uuid
from pathlib import Path

IDENT = r"`(?:[^`]|``)+`"
SELECT_RE = re.compile(rf"^SELECT \* FROM ({IDENT}(?:\.{IDENT}){{0,2}})( LIMIT 0)?$")
SHOW_RE = re.compile(rf"^SHOW TABLES(?: IN ({IDENT}(?:\.{IDENT})?))?$")
WAIT_RE = re.compile(r"^(0|[5-9]|[1-4][0-9]|50)s$")


def make_cert(d: Path):
    """A self-signed certificate for 127.0.0.1 / localhost, made by `openssl req`."""
    if not shutil.which("openssl"):
        raise AssertionError("openssl is needed to make the fixture's certificate (apt-get install openssl)")
    cert, key = d / "dbx-cert.pem", d / "dbx-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def unquote_name(s):
    return [p[1:-1].replace("``", "`") for p in re.findall(IDENT, s)]


class Table:
    def __init__(self, columns, rows):
        self.columns = columns  # [(name, type_name, type_text)]
        self.rows = rows        # [[str | None, ...]]


class DatabricksFixture:
    def __init__(self, tmp: Path, warehouse="5d1c3b2a9e8f7a6b", chunk_rows=3, pending_polls=1, running_polls=1):
        self.cert, self.key = make_cert(tmp)
        self.warehouse = warehouse
        self.chunk_rows = chunk_rows
        self.pending_polls = pending_polls
        self.running_polls = running_polls
        self.pats = set()
        self.clients = {}             # application id -> OAuth secret
        self.tokens = {}              # access token -> expiry (datetime)
        self.token_lifetime = 3600
        self.token_requests = 0
        self.tables = {}              # "catalog.schema.table" (lower case) -> Table
        self.failures = {}            # table key -> (error_code, message, sql_state)
        self.broken_chunks = {}       # table key -> {chunk index: bytes served instead}
        self.expire_links_once = False
        self.statements = {}
        self.requests = []            # {"method", "path", "auth", "headers"}
        self.cancels = []
        self.link_key = secrets.token_hex(8)
        self.lock = threading.Lock()
        fx = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send_json(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def send_raw(self, code, body, ctype="application/json"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def log(self):
                u = urllib.parse.urlsplit(self.path)
                with fx.lock:
                    fx.requests.append({"method": self.command, "path": u.path,
                                        "auth": self.headers.get("Authorization"),
                                        "headers": {k.lower(): v for k, v in self.headers.items()}})
                return u

            def do_GET(self):
                u = self.log()
                if u.path.startswith("/storage/"):
                    return self.storage(u)
                if not self.authorized():
                    return
                m = re.fullmatch(r"/api/2\.0/sql/statements/([^/]+)", u.path)
                if m:
                    return self.get_statement(m.group(1))
                m = re.fullmatch(r"/api/2\.0/sql/statements/([^/]+)/result/chunks/(\d+)", u.path)
                if m:
                    return self.get_chunk(m.group(1), int(m.group(2)))
                self.send_json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API found"})

            def do_POST(self):
                u = self.log()
                data = self.body()
                if u.path == "/oidc/v1/token":
                    return self.token(data)
                if not self.authorized():
                    return
                if u.path == "/api/2.0/sql/statements":
                    return self.execute(data)
                m = re.fullmatch(r"/api/2\.0/sql/statements/([^/]+)/cancel", u.path)
                if m:
                    with fx.lock:
                        fx.cancels.append(m.group(1))
                        st = fx.statements.get(m.group(1))
                        if st and st["state"] in ("PENDING", "RUNNING"):
                            st["state"] = "CANCELED"
                    return self.send_json(200, {})
                self.send_json(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "No API found"})

            # -- auth --------------------------------------------------------
            def token(self, data):
                fx.token_requests += 1
                auth = self.headers.get("Authorization", "")
                form = urllib.parse.parse_qs(data.decode())
                try:
                    cid, secret = base64.b64decode(auth[6:]).decode().split(":", 1) if auth.startswith("Basic ") \
                        else (None, None)
                except Exception:
                    cid = secret = None
                if form.get("grant_type") != ["client_credentials"] or form.get("scope") != ["all-apis"]:
                    return self.send_json(400, {"error": "invalid_request",
                                                "error_description": "grant_type and scope are required"})
                if cid is None or fx.clients.get(cid) != secret:
                    return self.send_json(401, {"error": "invalid_client",
                                                "error_description": "Client authentication failed"})
                tok = "dbx-oauth-" + secrets.token_hex(16)
                fx.tokens[tok] = datetime.datetime.now(datetime.timezone.utc) + \
                    datetime.timedelta(seconds=fx.token_lifetime)
                self.send_json(200, {"access_token": tok, "token_type": "Bearer", "expires_in": fx.token_lifetime,
                                     "scope": "all-apis"})

            def authorized(self):
                auth = self.headers.get("Authorization")
                if not auth or not auth.startswith("Bearer "):
                    self.send_json(401, {"error_code": "UNAUTHENTICATED",
                                         "message": "Credential was not sent or was of an unsupported type "
                                                    "for this API."})
                    return False
                tok = auth[7:]
                exp = fx.tokens.get(tok)
                if tok in fx.pats or (exp and exp > datetime.datetime.now(datetime.timezone.utc)):
                    return True
                self.send_json(403, {"error_code": "403", "message": "Invalid access token."})
                return False

            # -- statements ----------------------------------------------------
            def execute(self, data):
                try:
                    req = json.loads(data)
                except ValueError:
                    return self.send_json(400, {"error_code": "MALFORMED_REQUEST", "message": "bad JSON"})
                bad = None
                if not isinstance(req.get("statement"), str):
                    bad = "statement is required"
                elif req.get("warehouse_id") != fx.warehouse:
                    return self.send_json(404, {"error_code": "RESOURCE_DOES_NOT_EXIST",
                                                "message": f"Warehouse {req.get('warehouse_id')} does not exist"})
                elif req.get("disposition", "INLINE") not in ("INLINE", "EXTERNAL_LINKS"):
                    bad = "disposition must be INLINE or EXTERNAL_LINKS"
                elif req.get("format", "JSON_ARRAY") not in ("JSON_ARRAY", "CSV", "ARROW_STREAM"):
                    bad = "format must be JSON_ARRAY, ARROW_STREAM or CSV"
                elif req.get("disposition", "INLINE") == "INLINE" and req.get("format", "JSON_ARRAY") != "JSON_ARRAY":
                    bad = "INLINE disposition supports only JSON_ARRAY"
                elif not WAIT_RE.match(req.get("wait_timeout", "10s")):
                    bad = "wait_timeout must be 0s or between 5s and 50s"
                elif req.get("on_wait_timeout", "CONTINUE") not in ("CONTINUE", "CANCEL"):
                    bad = "on_wait_timeout must be CONTINUE or CANCEL"
                if bad:
                    return self.send_json(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": bad})
                sid = str(uuid.uuid4())
                st = {"id": sid, "req": req, "polls": 0, "state": "PENDING"}
                st.update(fx.plan(req))
                with fx.lock:
                    fx.statements[sid] = st
                self.send_json(200, {"statement_id": sid, "status": {"state": "PENDING"}})

            def get_statement(self, sid):
                st = fx.statements.get(sid)
                if not st:
                    return self.send_json(404, {"error_code": "NOT_FOUND", "message": f"statement {sid} not found"})
                with fx.lock:
                    if st["state"] in ("PENDING", "RUNNING"):
                        st["polls"] += 1
                        if st["polls"] > fx.pending_polls + fx.running_polls:
                            st["state"] = st["final"]
                        elif st["polls"] > fx.pending_polls:
                            st["state"] = "RUNNING"
                out = {"statement_id": sid, "status": {"state": st["state"]}}
                if st["state"] == "FAILED":
                    code, msg, sqlstate = st["error"]
                    out["status"]["error"] = {"error_code": code, "message": msg}
                    out["status"]["sql_state"] = sqlstate
                elif st["state"] == "SUCCEEDED":
                    out["manifest"] = fx.manifest(st)
                    if st["nchunks"]:
                        out["result"] = fx.result(st, 0, self.server_port())
                    else:
                        out["result"] = {}
                self.send_json(200, out)

            def get_chunk(self, sid, n):
                st = fx.statements.get(sid)
                if not st or st["state"] != "SUCCEEDED":
                    return self.send_json(404, {"error_code": "NOT_FOUND", "message": "no such result"})
                if n >= st["nchunks"]:
                    return self.send_json(400, {"error_code": "INVALID_PARAMETER_VALUE",
                                                "message": f"chunk index {n} out of range"})
                self.send_json(200, fx.result(st, n, self.server_port()))

            def server_port(self):
                return self.server.server_address[1]

            # -- "cloud storage" -----------------------------------------------
            def storage(self, u):
                m = re.fullmatch(r"/storage/([^/]+)/(\d+)", u.path)
                q = urllib.parse.parse_qs(u.query)
                if not m:
                    return self.send_raw(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
                sid, n = m.group(1), int(m.group(2))
                st = fx.statements.get(sid)
                if self.headers.get("Authorization"):
                    return self.send_raw(400, b"<Error><Code>InvalidArgument</Code><Message>Only one auth "
                                         b"mechanism allowed</Message></Error>", "application/xml")
                if not st or q.get("sig") != [fx.signature(sid, n)] or \
                        self.headers.get("x-fixture-key") != fx.link_key:
                    return self.send_raw(403, b"<Error><Code>AccessDenied</Code></Error>", "application/xml")
                if fx.expire_links_once and not st.get("expired_once"):
                    st["expired_once"] = True
                    return self.send_raw(403, b"<Error><Code>AccessDenied</Code><Message>Request has "
                                         b"expired</Message></Error>", "application/xml")
                broken = fx.broken_chunks.get(st.get("table"), {})
                if n in broken:
                    return self.send_raw(200, broken[n])
                rows = st["rows"][n * fx.chunk_rows:(n + 1) * fx.chunk_rows]
                # Even chunks as raw UTF-8, odd ones with \\u escapes: both are JSON.
                body = json.dumps(rows, ensure_ascii=bool(n % 2)).encode()
                self.send_raw(200, body, "application/octet-stream")

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the data --------------------------------------------------------------
    def add_table(self, name, columns, rows):
        self.tables[name.lower()] = Table(columns, rows)

    def resolve(self, parts, req):
        cat = req.get("catalog", "main")
        sch = req.get("schema", "default")
        if len(parts) == 1:
            parts = [cat, sch, parts[0]]
        elif len(parts) == 2:
            parts = [cat] + parts
        return ".".join(parts).lower()

    def signature(self, sid, n):
        return hashlib.sha256(f"{self.link_key}/{sid}/{n}".encode()).hexdigest()[:32]

    def plan(self, req):
        """What a statement will end as: its rows and columns, or its error."""
        sql = req["statement"]
        m = SELECT_RE.match(sql)
        if m:
            key = self.resolve(unquote_name(m.group(1)), req)
            shown = m.group(1)
            if key in self.failures:
                return {"final": "FAILED", "error": self.failures[key], "table": key}
            if key not in self.tables:
                return {"final": "FAILED", "table": key, "error": (
                    "BAD_REQUEST",
                    f"[TABLE_OR_VIEW_NOT_FOUND] The table or view {shown} cannot be found. Verify the "
                    "spelling and correctness of the schema and catalog. SQLSTATE: 42P01; line 1 pos 14",
                    "42P01")}
            t = self.tables[key]
            rows = [] if m.group(2) else t.rows
            return self.success(req, t.columns, rows, key)
        m = SHOW_RE.match(sql)
        if m:
            parts = unquote_name(m.group(1)) if m.group(1) else [req.get("schema", "default")]
            if len(parts) == 1:
                parts = [req.get("catalog", "main")] + parts
            prefix = ".".join(parts).lower() + "."
            names = sorted(k[len(prefix):] for k in self.tables if k.startswith(prefix))
            cols = [("database", "STRING", "string"), ("tableName", "STRING", "string"),
                    ("isTemporary", "BOOLEAN", "boolean")]
            return self.success(req, cols, [[parts[-1], n, "false"] for n in names], None)
        return {"final": "FAILED", "error": ("BAD_REQUEST", "[PARSE_SYNTAX_ERROR] Syntax error. SQLSTATE: 42601",
                                             "42601")}

    def success(self, req, columns, rows, key):
        external = req.get("disposition") == "EXTERNAL_LINKS"
        n = (len(rows) + self.chunk_rows - 1) // self.chunk_rows if external else (1 if rows else 0)
        return {"final": "SUCCEEDED", "columns": columns, "rows": rows, "nchunks": n, "external": external,
                "table": key}

    def chunk_rows_of(self, st, i):
        if not st["external"]:
            return st["rows"]
        return st["rows"][i * self.chunk_rows:(i + 1) * self.chunk_rows]

    def manifest(self, st):
        chunks = []
        for i in range(st["nchunks"]):
            rows = self.chunk_rows_of(st, i)
            chunks.append({"chunk_index": i, "row_offset": i * self.chunk_rows, "row_count": len(rows),
                           "byte_count": len(json.dumps(rows))})
        return {"format": "JSON_ARRAY",
                "schema": {"column_count": len(st["columns"]),
                           "columns": [{"name": c[0], "position": i, "type_name": c[1], "type_text": c[2]}
                                       for i, c in enumerate(st["columns"])]},
                "total_chunk_count": st["nchunks"], "chunks": chunks, "total_row_count": len(st["rows"]),
                "truncated": False}

    def result(self, st, i, port):
        rows = self.chunk_rows_of(st, i)
        res = {"chunk_index": i, "row_offset": i * self.chunk_rows, "row_count": len(rows)}
        if i + 1 < st["nchunks"]:
            nxt = {"next_chunk_index": i + 1,
                   "next_chunk_internal_link": f"/api/2.0/sql/statements/{st['id']}/result/chunks/{i + 1}"}
        else:
            nxt = {}
        if not st["external"]:
            res["data_array"] = rows
            res.update(nxt)
            return res
        exp = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=15)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z")
        link = dict(res, byte_count=len(json.dumps(rows)),
                    external_link=f"https://127.0.0.1:{port}/storage/{st['id']}/{i}?sig={self.signature(st['id'], i)}",
                    expiration=exp, http_headers={"x-fixture-key": self.link_key}, **nxt)
        return {"external_links": [link]}
