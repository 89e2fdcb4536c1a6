"""A real, throw-away PostgreSQL server for end-to-end tests.

    from pgserver import PgServer
    with PgServer() as pg:
        pg.create_role("reader", "pw")
        pg.create_database("gm", owner="reader")
        pg.sql("CREATE TABLE t(i int)", db="gm")
        pg.port  # TCP port on 127.0.0.1 (password auth: scram-sha-256)

The server is the Debian package's (PostgreSQL 15 by default; $PG_BINDIR
overrides the directory holding initdb, pg_ctl and psql). Everything lives
in one temporary directory: the cluster, the unix socket (trust auth, used
by the helper itself as superuser `postgres`) and the server log. TCP
connections from 127.0.0.1 need a password, so tests can exercise real
authentication.

PostgreSQL refuses to run as root: when the tests run as root, initdb and
the server run as the `postgres` system user (created by the Debian package)
through `runuser -u postgres --`, and the temporary directory is given to
that user. The directory is made with tempfile.mkdtemp (in /tmp) rather than
under pytest's tmp_path because pytest's base directory is private to the
test user (mode 0700) and `postgres` could not reach it.

The server is small (16 MB shared buffers, 20 connections, fsync off): it is
for correctness tests, not benchmarks.
"""
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PgServer:
    def __init__(self, superuser: str = "postgres", bindir: Path = PG_BINDIR):
        for tool in ("initdb", "pg_ctl", "psql"):
            if not os.access(bindir / tool, os.X_OK):
                raise RuntimeError(f"PostgreSQL tool {bindir / tool} not found: install the Debian "
                                   "package postgresql (or set PG_BINDIR)")
        self.bindir = bindir
        self.superuser = superuser
        self.as_root = os.geteuid() == 0
        self.dir: Path | None = None
        self.port: int | None = None
        self.host = "127.0.0.1"
        self.running = False

    # -- paths ---------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def sockdir(self) -> Path:
        return self.dir / "sock"

    @property
    def logfile(self) -> Path:
        return self.dir / "server.log"

    # -- running tools -------------------------------------------------------
    def _server_cmd(self, args):
        """Runs as the `postgres` system user when we are root."""
        if self.as_root:
            return ["runuser", "-u", "postgres", "--", *map(str, args)]
        return [str(a) for a in args]

    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", TZ="UTC")
        return env

    def _run_server_tool(self, args, timeout=120):
        p = subprocess.run(self._server_cmd(args), capture_output=True, text=True, env=self._env(),
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-3000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{' '.join(map(str, args))} exited {p.returncode}\n"
                               f"stdout: {p.stdout}\nstderr: {p.stderr}\nserver log: {log}")
        return p

    # -- life cycle ----------------------------------------------------------
    def start(self, attempts: int = 3):
        self.dir = Path(tempfile.mkdtemp(prefix="airlock-pg-"))
        self.sockdir.mkdir()
        if self.as_root:
            pw = pwd.getpwnam("postgres")  # KeyError: the postgresql package is not installed
            for p in (self.dir, self.sockdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self._run_server_tool([self.bindir / "initdb", "-D", self.data, "-U", self.superuser,
                               "--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions",
                               "--auth-local=trust", "--auth-host=scram-sha-256"])
        last = None
        for _ in range(attempts):
            self.port = free_port()
            opts = " ".join([
                f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.sockdir}", "-c shared_buffers=16MB",
                "-c max_connections=20", "-c fsync=off", "-c synchronous_commit=off",
                "-c full_page_writes=off", "-c password_encryption=scram-sha-256",
                "-c log_min_messages=warning", "-c TimeZone=Europe/London",
            ])
            try:
                self._run_server_tool([self.bindir / "pg_ctl", "-D", self.data, "-l", self.logfile,
                                       "-o", opts, "-w", "-t", "60", "start"])
                self.running = True
                return self
            except RuntimeError as e:  # most likely the port was taken meanwhile
                last = e
        self.cleanup()
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def stop(self):
        if self.running:
            self._run_server_tool([self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])
            self.running = False

    def cleanup(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def close(self):
        try:
            self.stop()
        finally:
            self.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- SQL -----------------------------------------------------------------
    def psql_cmd(self, db="postgres", user=None):
        """psql as a superuser over the unix socket (trust); -X ignores ~/.psqlrc."""
        return [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.sockdir),
                "-p", str(self.port), "-U", user or self.superuser, "-d", db]

    def sql(self, *statements, db="postgres", user=None, args=(), timeout=300) -> str:
        """Runs each statement with psql -c (in order, each its own transaction)
        and returns psql's unaligned, tuples-only output."""
        cmd = self.psql_cmd(db, user) + ["-A", "-t", *args]
        for s in statements:
            cmd += ["-c", s]
        p = subprocess.run(cmd, capture_output=True, env=self._env(), timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError(f"psql failed ({p.returncode}): {p.stderr.decode(errors='replace')}\n"
                               f"statements: {str(statements)[:500]}")
        return p.stdout.decode()

    def sql_bytes(self, *statements, db="postgres", user=None, args=()) -> bytes:
        """As sql(), but the raw bytes psql wrote (for COPY ... TO STDOUT)."""
        cmd = self.psql_cmd(db, user) + ["-A", "-t", *args]
        for s in statements:
            cmd += ["-c", s]
        p = subprocess.run(cmd, capture_output=True, env=self._env(), timeout=300,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError(f"psql failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
        return p.stdout

    def popen_sql(self, script: str, db="postgres", user=None):
        """psql reading `script` from stdin, in the background (a second session)."""
        p = subprocess.Popen(self.psql_cmd(db, user), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self._env(), text=True)
        p.stdin.write(script)
        p.stdin.close()
        return p

    def create_role(self, name, password=None, login=True, extra=""):
        opts = "LOGIN" if login else "NOLOGIN"
        if password is not None:
            opts += " PASSWORD " + quote_literal(password)
        self.sql(f"CREATE ROLE {quote_ident(name)} {opts} {extra}")

    def create_database(self, name, owner=None, encoding="UTF8", template="template0"):
        stmt = (f"CREATE DATABASE {quote_ident(name)} TEMPLATE {template} ENCODING "
                f"{quote_literal(encoding)} LOCALE 'C'")
        if owner:
            stmt += f" OWNER {quote_ident(owner)}"
        self.sql(stmt)

    def server_log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
