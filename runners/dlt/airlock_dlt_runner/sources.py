"""Connections: from a spec.connections[] entry to a SQLAlchemy engine that
dlt's sql_database source reads through.

One Source per connection. What each promises (the native runner's
source.h, as far as SQLAlchemy and dlt allow):
  - open() builds the engine from the connection's url and the job's
    credentials (sqlalchemy.engine.URL.create, so user and password are
    escaped by SQLAlchemy and never pass through string formatting), connects
    once and fails with a message naming the connection, host and database
    and what to do - never the url, never a password (errors.REDACT);
  - a url that carries a password is refused: passwords belong in the
    credentials file;
  - check() runs for every table before anything is written: a missing
    table's message lists the tables that exist (at most 30);
  - sessions are read-only where the database has such a setting
    (PostgreSQL default_transaction_read_only, MySQL/MariaDB SESSION
    TRANSACTION READ ONLY, SQLite opened mode=ro with query_only);
  - PostgreSQL: every table of a connection is read from one snapshot
    (pg_export_snapshot in a transaction held open for the whole run, and
    SET TRANSACTION SNAPSHOT in each transaction dlt opens); other databases
    read each table in its own transaction;
  - SQLite urls are read as the native runner reads them (sqlite:///abs is
    an absolute path, unlike SQLAlchemy's relative reading of three slashes).
"""
from __future__ import annotations

import os
import re
import sqlite3
import stat
import urllib.parse
from dataclasses import dataclass

import sqlalchemy as sa

from .errors import REDACT, RunnerError, describe_exception
from .inputs import Connection

CONNECT_TIMEOUT_S = 30
LIST_TABLES_MAX = 30
CHUNK_ROWS = 50_000

# Output conventions per source family, so CSV values look like the native
# runner's for the same database (writers.py).
PROFILE = {
    "sqlite": "sqlite",
    "postgresql": "postgresql", "postgres": "postgresql",
    "mysql": "mysql", "mariadb": "mysql",
    "mssql": "generic", "sqlserver": "generic",
    "databricks": "generic",
}

PG_PARAMS = {"sslmode", "sslrootcert", "sslcert", "sslkey"}
MYSQL_PARAMS = {"ssl", "sslca", "socket"}
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
MSSQL_PARAMS: set[str] = set()
DATABRICKS_PARAMS = {"catalog", "schema", "http_path", "warehouse_id"}


@dataclass
class TableRef:
    object_name: str      # as written in spec.objects (names the file)
    schema: str | None
    name: str             # as the database spells it


def sqlite_path_from_url(url: str | None) -> str:
    """The native runner's reading (source_sqlite_path_from_url): sqlite:///abs
    and sqlite:////abs are absolute, sqlite://rel and sqlite:rel relative,
    anything else a plain path."""
    if not url:
        raise RunnerError("sqlite connection has no url; give a path such as sqlite:///data/source.db")
    p = url
    if p.startswith("sqlite:"):
        p = p[7:]
        if p.startswith("///"):
            p = p[2:]
            while p.startswith("//"):
                p = p[1:]
        elif p.startswith("//"):
            p = p[2:]
    if not p or p == ":memory:":
        raise RunnerError("sqlite connection url names no database file; use sqlite:///absolute/path.db")
    return p


def _server_version(engine: sa.engine.Engine) -> str:
    info = getattr(engine.dialect, "server_version_info", None)
    if not info:
        return ""
    return ".".join(str(x) for x in info if isinstance(x, int))  # MariaDB adds a 'MariaDB' part


class Source:
    """One connection, opened once for all its tables."""

    def __init__(self, conn: Connection, credentials: dict[str, str] | None):
        self.conn = conn
        self.type = conn.type
        self.profile = PROFILE[conn.type]
        self.credentials = credentials
        self.engine: sa.engine.Engine | None = None
        self.holder = None            # PostgreSQL: the connection holding the exported snapshot
        self.one_snapshot = False
        self.host: str | None = None
        self.database: str | None = None
        self.server_version = ""
        self._names: dict[str | None, list[str]] = {}

    # -- credentials ---------------------------------------------------------
    def _credential(self, field: str, what: str, required: bool) -> str | None:
        keys = self.conn.spec.get("credentials")
        key = keys.get(field) if isinstance(keys, dict) else None
        if key is None:
            if required:
                raise RunnerError(f"connection '{self.conn.name}': needs {what}: set credentials.{field} to a key "
                                  "of the job's credentials")
            return None
        if not isinstance(key, str):
            raise RunnerError(f"spec.connections[{self.conn.index}].credentials.{field}: must be a string")
        if self.credentials is None:
            raise RunnerError(f"connection '{self.conn.name}': needs {what}: credentials.{field} '{key}' names a "
                              "credential but no credentials file was given (--credentials or "
                              "$AIRLOCK_CREDENTIALS_FILE)")
        value = self.credentials.get(key)
        if value is None:
            raise RunnerError(f"connection '{self.conn.name}': needs {what}: credentials.{field} '{key}' is not "
                              "among the job's credentials")
        return value

    # -- urls ------------------------------------------------------------------
    def _split_url(self, schemes: tuple[str, ...], example: str, allowed: set[str]):
        url = self.conn.spec.get("url")
        name = self.conn.name
        if not isinstance(url, str) or not url:
            raise RunnerError(f"connection '{name}' has no url; give {example}")
        try:
            u = urllib.parse.urlsplit(url)
            port = u.port
        except ValueError:
            raise RunnerError(f"connection '{name}': the url is not valid (expected {example})") from None
        scheme = u.scheme.lower().split("+", 1)[0]
        if scheme not in schemes:
            raise RunnerError(f"connection '{name}': the url must start with {' or '.join(s + '://' for s in schemes)}"
                              f" (expected {example})")
        if u.password is not None:
            raise RunnerError(f"connection '{name}': the url must not carry a password: put it in the job's "
                              "credentials and name its key in credentials.passwordKey")
        if not u.hostname:
            raise RunnerError(f"connection '{name}': the url names no host (expected {example})")
        params = {}
        for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True):
            if k not in allowed:
                shown = k if re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", k) else "?"
                raise RunnerError(f"connection '{name}': the url has an unknown parameter '{shown}' (supported: "
                                  f"{', '.join(sorted(allowed)) or 'none'})")
            params[k] = v
        user = urllib.parse.unquote(u.username) if u.username else None
        return u, port, user, params

    def _database_from_path(self, u, example: str, required: bool = True) -> str | None:
        path = urllib.parse.unquote(u.path).strip("/")
        if not path:
            if required:
                raise RunnerError(f"connection '{self.conn.name}': the url names no database (expected {example})")
            return None
        if "/" in path:
            raise RunnerError(f"connection '{self.conn.name}': the url has more than one path segment (the "
                              f"database; expected {example})")
        return path

    # -- opening -------------------------------------------------------------
    def open(self) -> None:
        builder = {
            "sqlite": self._engine_sqlite,
            "postgresql": self._engine_postgresql,
            "mysql": self._engine_mysql,
            "generic": None,
        }[self.profile]
        if builder is None:
            builder = self._engine_mssql if self.type in ("mssql", "sqlserver") else self._engine_databricks
        self.engine = builder()
        try:
            with self.engine.connect() as c:
                if self.profile == "sqlite":
                    # Proves it is a database, as the native runner does.
                    c.exec_driver_sql("SELECT count(*) FROM sqlite_schema").scalar()
            self.server_version = sqlite3.sqlite_version if self.profile == "sqlite" else _server_version(self.engine)
        except RunnerError:
            raise
        except Exception as e:  # driver errors: bad credentials, unreachable host, no such database
            raise RunnerError(self._connect_error(e)) from None
        if self.profile == "postgresql":
            self._share_snapshot()

    def _where(self) -> str:
        if self.profile == "sqlite":
            return f"sqlite database {self.database}"
        return f"{self.type} database {self.database or '(default)'} on {self.host}"

    def _connect_error(self, e: Exception) -> str:
        what = describe_exception(e)
        if self.profile == "sqlite":
            return f"sqlite database {self.database}: cannot read the schema (is it a SQLite database?): {what}"
        return (f"connection '{self.conn.name}': cannot connect to {self._where()}: {what} (check the url, the "
                "credentials and that the server accepts connections from the airlock)")

    def _engine_sqlite(self) -> sa.engine.Engine:
        path = sqlite_path_from_url(self.conn.spec.get("url"))
        self.database = os.path.basename(path)
        try:
            st = os.stat(path)
        except OSError as e:
            raise RunnerError(f"sqlite database {path}: cannot open: {e.strerror} (check the connection url)") from None
        if not stat.S_ISREG(st.st_mode):
            raise RunnerError(f"sqlite database {path} is not a regular file")
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"

        def connect():
            con = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=10)
            # The file may come from anywhere: no side effects from its schema,
            # and no writes even through pragmas.
            con.execute("PRAGMA trusted_schema=OFF")
            con.execute("PRAGMA query_only=ON")
            return con

        return sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.NullPool)

    def _engine_postgresql(self) -> sa.engine.Engine:
        example = "postgresql://host:5432/database"
        u, port, url_user, params = self._split_url(("postgresql", "postgres"), example, PG_PARAMS)
        self.host = u.hostname
        self.database = self._database_from_path(u, example)
        user = self._credential("userKey", "a user", required=False) or url_user
        password = self._credential("passwordKey", "a password", required=False)
        url = sa.engine.URL.create("postgresql+psycopg2", username=user, password=password, host=u.hostname,
                                   port=port, database=self.database)
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "airlock-dlt-runner",
                        "options": "-c default_transaction_read_only=on -c TimeZone=UTC", **params}
        # json/jsonb as PostgreSQL's own text (not parsed and re-serialised),
        # as the native runner writes them.
        engine = sa.create_engine(url, connect_args=connect_args, json_deserializer=lambda text: text)

        return engine

    def _engine_mysql(self) -> sa.engine.Engine:
        example = "mariadb://host:3306/database"
        u, port, url_user, params = self._split_url(("mariadb", "mysql"), example, MYSQL_PARAMS)
        self.host = u.hostname
        self.database = self._database_from_path(u, example)
        user = self._credential("userKey", "a user", required=False) or url_user
        password = self._credential("passwordKey", "a password", required=False)
        connect_args: dict = {"connect_timeout": CONNECT_TIMEOUT_S, "charset": "utf8mb4"}
        # The native runner's ssl parameters (docs/runner.md, MariaDB source).
        ssl_mode = params.get("ssl", "")
        if "sslca" in params or ssl_mode == "verify_identity":
            import ssl

            ctx = ssl.create_default_context(cafile=params.get("sslca") or None)  # checks name and chain
            connect_args["ssl"] = ctx
        elif ssl_mode == "required":
            connect_args["ssl"] = {"check_hostname": False}  # encrypted, not verified (like --ssl-mode=REQUIRED)
        elif ssl_mode not in ("", "disabled"):
            raise RunnerError(f"connection '{self.conn.name}': url parameter ssl must be disabled, required or "
                              "verify_identity")
        if "socket" in params:
            connect_args["unix_socket"] = params["socket"]
        url = sa.engine.URL.create("mysql+pymysql", username=user, password=password, host=u.hostname,
                                   port=port, database=self.database)
        engine = sa.create_engine(url, connect_args=connect_args, isolation_level="REPEATABLE READ")

        @sa.event.listens_for(engine, "connect")
        def _read_only(dbapi_con, _record):
            with dbapi_con.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION READ ONLY")
                cur.execute("SET SESSION time_zone = '+00:00'")

        return engine

    def _engine_mssql(self) -> sa.engine.Engine:
        example = "mssql://host:1433/database"
        u, port, url_user, _ = self._split_url(("mssql", "sqlserver"), example, MSSQL_PARAMS)
        self.host = u.hostname
        self.database = self._database_from_path(u, example)
        user = self._credential("userKey", "a user", required=False) or url_user
        password = self._credential("passwordKey", "a password", required=False)
        url = sa.engine.URL.create("mssql+pymssql", username=user, password=password, host=u.hostname,
                                   port=port, database=self.database)
        return sa.create_engine(url, connect_args={"login_timeout": CONNECT_TIMEOUT_S, "timeout": 0})

    def _engine_databricks(self) -> sa.engine.Engine:
        example = "https://<workspace host>/sql/1.0/warehouses/<id>?catalog=main&schema=default"
        u, port, _, params = self._split_url(("https", "databricks"), example, DATABRICKS_PARAMS)
        self.host = u.hostname
        if port not in (None, 443):
            raise RunnerError(f"connection '{self.conn.name}': the Databricks client always uses port 443; remove "
                              f":{port} from the url")
        if params.get("warehouse_id"):  # the native runner's second form
            http_path = "/sql/1.0/warehouses/" + params["warehouse_id"]
        else:
            http_path = params.get("http_path") or urllib.parse.unquote(u.path)
        if not http_path or http_path == "/":
            raise RunnerError(f"connection '{self.conn.name}': the url names no SQL warehouse (expected {example}, "
                              "or ?warehouse_id=<id>)")
        self.database = ".".join(p for p in (params.get("catalog"), params.get("schema")) if p) or None
        user = self._credential("userKey", "a service principal id", required=False)
        secret = self._credential("passwordKey", "a personal access token or OAuth secret", required=True)
        query = {"http_path": http_path}
        for k in ("catalog", "schema"):
            if params.get(k):
                query[k] = params[k]
        netloc = u.hostname + (f":{port}" if port else "")
        # The connector retries a failing request for up to 15 minutes by
        # default: an unreachable workspace should fail within about a minute.
        connect_args = {"_retry_stop_after_attempts_count": 3,
                        "_retry_stop_after_attempts_duration": 2.0 * CONNECT_TIMEOUT_S,
                        "_socket_timeout": 10.0 * CONNECT_TIMEOUT_S}
        if user and UUID_RE.fullmatch(user):
            # A service principal: OAuth machine-to-machine, as the native runner.
            url = sa.engine.URL.create("databricks", host=u.hostname, port=port, query=query)
            connect_args["credentials_provider"] = _databricks_m2m(netloc, user, secret, self.conn.name)
            return sa.create_engine(url, connect_args=connect_args)
        # A personal access token: the password of the user "token".
        url = sa.engine.URL.create("databricks", username="token", password=secret, host=u.hostname,
                                   port=port, query=query)
        return sa.create_engine(url, connect_args=connect_args)

    def _share_snapshot(self) -> None:
        """PostgreSQL: one snapshot for all tables of the connection."""
        try:
            self.holder = self.engine.connect()
            self.holder.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snap = self.holder.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
        except Exception as e:
            self._close_holder()
            raise RunnerError(self._connect_error(e)) from None
        if not isinstance(snap, str) or not re.fullmatch(r"[0-9A-Fa-f-]{1,64}", snap):
            self._close_holder()
            raise RunnerError(f"connection '{self.conn.name}': {self._where()} returned an unexpected snapshot id")
        statement = f"SET TRANSACTION SNAPSHOT '{snap}'"

        @sa.event.listens_for(self.engine, "begin")
        def _begin(conn):
            if conn is self.holder:
                return
            # On the DBAPI connection: the SQLAlchemy one may carry dlt's
            # stream_results option, which would wrap these in a cursor.
            cur = conn.connection.dbapi_connection.cursor()
            try:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.execute(statement)
            finally:
                cur.close()

        self.one_snapshot = True

    def _close_holder(self) -> None:
        if self.holder is not None:
            try:
                self.holder.close()
            except Exception:
                pass
            self.holder = None

    def close(self) -> None:
        self._close_holder()
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    # -- tables ----------------------------------------------------------------
    def _list(self, schema: str | None) -> list[str]:
        if schema in self._names:
            return self._names[schema]
        try:
            if self.profile == "sqlite":
                with self.engine.connect() as c:
                    names = [r[0] for r in c.exec_driver_sql(
                        "SELECT name FROM sqlite_schema WHERE type IN ('table','view') "
                        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")]
            else:
                insp = sa.inspect(self.engine)
                names = set(insp.get_table_names(schema=schema)) | set(insp.get_view_names(schema=schema))
                if self.profile == "postgresql":
                    names |= set(insp.get_materialized_view_names(schema=schema))
                names = sorted(names)
        except Exception as e:
            raise RunnerError(f"connection '{self.conn.name}': cannot list the tables of {self._where()}"
                              f"{' schema ' + schema if schema else ''}: {describe_exception(e)}") from None
        self._names[schema] = names
        return names

    @staticmethod
    def _find(names: list[str], wanted: str) -> str | None:
        if wanted in names:
            return wanted
        folded = [n for n in names if n.lower() == wanted.lower()]
        return folded[0] if len(folded) == 1 else None

    def check(self, object_name: str) -> TableRef:
        """The table an object names; RunnerError listing the tables present if none."""
        names = self._list(None)
        found = self._find(names, object_name)
        if found is not None:
            return TableRef(object_name, None, found)
        listed, where = names, self.database
        if "." in object_name and self.profile != "sqlite":
            schema, table = object_name.split(".", 1)
            try:
                snames = self._list(schema)
            except RunnerError:
                snames = []
            found = self._find(snames, table)
            if found is not None:
                return TableRef(object_name, schema, found)
            if snames:
                listed, where = snames, f"{self.database} schema {schema}"
        shown = ", ".join(listed[:LIST_TABLES_MAX]) or "(none)"
        if len(listed) > LIST_TABLES_MAX:
            shown += f" and {len(listed) - LIST_TABLES_MAX} more"
        raise RunnerError(f"connection '{self.conn.name}': table '{object_name}' not found in {where}; tables "
                          f"present: {shown}")

    def resource(self, ref: TableRef):
        """dlt's sql_table resource for the table (reflected now, so a table
        dlt cannot read fails before anything is written), the reflected
        SQLAlchemy Table, and column name -> the type as the source names it."""
        from dlt.sources.sql_database import sql_table

        reflected: list = []
        types: dict[str, str] = {}
        as_text: set[str] = set()

        def keep(table):
            for col in table.columns:
                types[col.name] = self._type_name(col.type)
                # MySQL's DOUBLE and FLOAT reflect as asdecimal=True, which dlt
                # would turn into decimal(38,9) ("0.100000000"): they are floats.
                if isinstance(col.type, sa.types.Float) and col.type.asdecimal:
                    col.type.asdecimal = False
                if self.profile == "postgresql" and _pg_needs_text(col.type):
                    as_text.add(col.name)
                    col.type = sa.types.Text()  # so dlt's hint is text, too
            reflected.append(table)
            return None

        def read_as_text(query, table):
            """dlt's SELECT with those columns read as ::text, so their values
            are exactly what PostgreSQL (and so the native runner) writes."""
            if not as_text:
                return query
            return query.with_only_columns(*[sa.cast(c, sa.Text).label(c.name) if c.name in as_text else c
                                             for c in table.columns])

        try:
            res = sql_table(credentials=self.engine, table=ref.name, schema=ref.schema, backend="pyarrow",
                            reflection_level="full_with_precision", chunk_size=CHUNK_ROWS,
                            table_adapter_callback=keep, backend_kwargs={"tz": "UTC"},
                            query_adapter_callback=read_as_text)
            if self.profile == "sqlite":
                types = self._sqlite_declared_types(ref)
        except Exception as e:
            raise RunnerError(f"connection '{self.conn.name}': table '{ref.object_name}' in {self._where()}: "
                              f"cannot read its columns: {describe_exception(e)}") from None
        if not reflected:
            raise RunnerError(f"connection '{self.conn.name}': table '{ref.object_name}' in {self._where()}: dlt "
                              "did not reflect it")
        return res, reflected[-1], types

    def _type_name(self, t) -> str:
        if isinstance(t, sa.types.NullType):
            return ""
        try:
            return t.compile(dialect=self.engine.dialect)
        except Exception:
            return str(t)

    def _sqlite_declared_types(self, ref: TableRef) -> dict[str, str]:
        """The declared types, exactly as the native runner reports them."""
        quoted = '"' + ref.name.replace('"', '""') + '"'
        with self.engine.connect() as c:
            return {r[1]: r[2] or "" for r in c.exec_driver_sql(f"PRAGMA table_info({quoted})")}

    def describe(self) -> dict:
        """Secret-free description for provenance."""
        return {"host": self.host or "", "database": self.database or "", "serverVersion": self.server_version}


def _databricks_m2m(netloc: str, client_id: str, secret: str, conn_name: str):
    """databricks-sql-connector's credentials_provider for OAuth M2M: a token
    from https://<host>/oidc/v1/token (client_credentials, scope all-apis),
    kept until a minute before it expires."""
    import time

    import requests

    state: dict = {"token": None, "expires": 0.0}

    def headers() -> dict:
        if state["token"] is None or time.time() > state["expires"] - 60:
            try:
                r = requests.post(f"https://{netloc}/oidc/v1/token", auth=(client_id, secret), timeout=CONNECT_TIMEOUT_S,
                                  data={"grant_type": "client_credentials", "scope": "all-apis"})
            except requests.RequestException as e:
                raise RunnerError(f"connection '{conn_name}': cannot reach {netloc} for an OAuth token: "
                                  f"{describe_exception(e)}") from None
            if r.status_code != 200:
                raise RunnerError(f"connection '{conn_name}': {netloc} refused the OAuth token request (HTTP "
                                  f"{r.status_code}): check the service principal id (credentials.userKey) and its "
                                  "secret (credentials.passwordKey)")
            body = r.json()
            state["token"] = body["access_token"]
            REDACT.add(state["token"])
            state["expires"] = time.time() + float(body.get("expires_in", 3600))
        return {"Authorization": f"Bearer {state['token']}"}

    return lambda: headers


def _pg_needs_text(t) -> bool:
    """PostgreSQL types dlt has no arrow form for, or turns into something
    less useful than PostgreSQL's own text: arrays ("{1,2,3}", where dlt would
    write JSON), intervals ("1 day 02:00:00", where dlt would write a count
    of microseconds), numeric without a declared scale (any precision, where
    dlt would round to decimal(38,9)), ranges, and types SQLAlchemy does not
    know (inet, money, tsvector, ... arrive as NullType)."""
    from sqlalchemy.dialects import postgresql as pgd

    if isinstance(t, sa.types.Numeric) and not isinstance(t, sa.types.Float) and t.scale is None:
        return True
    return isinstance(t, (sa.types.ARRAY, pgd.INTERVAL, sa.types.NullType)) or \
        isinstance(t, getattr(pgd, "AbstractRange", ())) or \
        type(t).__name__ in ("INET", "CIDR", "MACADDR", "MACADDR8", "MONEY", "TSVECTOR", "OID", "REGCLASS",
                             "BIT", "PGBit", "HSTORE", "CITEXT")


def redact_url_parts(conn: Connection) -> None:
    """Registers what must never be shown from a connection's url."""
    url = conn.spec.get("url")
    if isinstance(url, str):
        try:
            pw = urllib.parse.urlsplit(url).password
        except ValueError:
            pw = None
        if pw:
            REDACT.add(pw)
            REDACT.add(urllib.parse.unquote(pw))
