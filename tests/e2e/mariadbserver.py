"""A real MariaDB server for end-to-end tests (Debian's mariadb-server).

Each instance gets its own data directory (mariadb-install-db with normal
password authentication for root), Unix socket and free TCP port on
127.0.0.1, and real authentication (no --skip-grant-tables). It is driven with
the `mariadb` command-line client as root over the socket.

    srv = MariaDBServer(tmp_path / "mariadb").start()
    try:
        srv.sql("CREATE DATABASE gm")
        srv.create_user("reader", "pw", "GRANT SELECT ON gm.* TO {user}")
        rows = srv.query("SELECT 1", database="gm")    # [["1"]]
    finally:
        srv.stop()

A missing binary is an error (RuntimeError), never a silent skip.
"""
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
CLIENT = "/usr/bin/mariadb"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lit(v) -> str:
    """A SQL literal that needs no escaping: hex for strings and bytes."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, bytes):
        return f"x'{v.hex()}'"
    return f"_utf8mb4 x'{v.encode('utf-8').hex()}'" if v else "''"


def string_literal(v: str) -> str:
    """A plain '...' literal (for the few places that take no expression)."""
    return "'" + v.replace("\\", "\\\\").replace("'", "''") + "'"


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _unescape_batch(field: str):
    """One field of `mariadb --batch` output (NULL, \\0 \\t \\n \\\\ escapes)."""
    if field == "NULL":
        return None
    out, i = [], 0
    while i < len(field):
        c = field[i]
        if c == "\\" and i + 1 < len(field):
            n = field[i + 1]
            out.append({"0": "\0", "t": "\t", "n": "\n", "\\": "\\"}.get(n, n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _make_certs(d: Path):
    """A CA and a server certificate for 127.0.0.1 (openssl CLI)."""
    if not shutil.which("openssl"):
        raise RuntimeError("openssl not found: needed to make the test server's TLS certificate")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=airlock test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    # A second, unrelated CA, for "wrong CA" tests.
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out",
        "other-ca.pem", "-days", "2", "-subj", "/CN=some other CA")


class MariaDBServer:
    host = "127.0.0.1"

    def __init__(self, root: Path, tls: bool = False):
        self.root = Path(root)
        self.datadir = self.root / "data"
        self.socket = self.root / "mariadb.sock"
        self.log = self.root / "mariadbd.log"
        self.port = None
        self.tls = tls
        self.proc = None

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    @property
    def other_ca(self) -> Path:
        return self.root / "other-ca.pem"

    # -- process --------------------------------------------------------
    def start(self, timeout=60):
        for b in (MARIADBD, INSTALL_DB, CLIENT):
            if not os.access(b, os.X_OK):
                raise RuntimeError(f"{b} not found: install the Debian mariadb-server and "
                                   "mariadb-client packages")
        self.root.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket)) > 100:
            raise RuntimeError(f"socket path {self.socket} is too long for a Unix socket")
        if not self.datadir.exists():
            p = subprocess.run([INSTALL_DB, "--no-defaults", "--auth-root-authentication-method=normal",
                                f"--datadir={self.datadir}", "--user=root", "--skip-test-db"],
                               capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"mariadb-install-db failed: {p.stdout[-2000:]}{p.stderr[-2000:]}")
        args = [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
                f"--pid-file={self.root / 'mariadbd.pid'}", f"--log-error={self.log}",
                "--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
                # small: a shared 2-core machine
                "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M", "--performance-schema=OFF",
                "--max-connections=30", "--key-buffer-size=1M", "--skip-log-bin"]
        if self.tls:
            _make_certs(self.root)
            args += [f"--ssl-ca={self.root / 'ca.pem'}", f"--ssl-cert={self.root / 'server.pem'}",
                     f"--ssl-key={self.root / 'server.key'}"]
        self.port = free_port()
        args.append(f"--port={self.port}")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.proc.returncode}: {self._log_tail()}")
            if self.socket.exists():
                p = subprocess.run(self._client_args() + ["-e", "SELECT 1"], capture_output=True, timeout=10)
                if p.returncode == 0:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mariadbd did not start in {timeout}s: {self._log_tail()}")

    def stop(self):
        """Clean shutdown (SIGTERM); waits for it."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _log_tail(self):
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    # -- client -----------------------------------------------------------
    def _client_args(self, database=None, user="root", password=None):
        a = [CLIENT, "--no-defaults", f"--socket={self.socket}", f"--user={user}",
             "--default-character-set=utf8mb4"]
        if password is not None:
            a.append(f"--password={password}")
        if database:
            a.append(f"--database={database}")
        return a

    def sql(self, text, database=None, user="root", password=None, check=True, timeout=600):
        """Runs SQL statements as root over the socket."""
        # bytes, not text=True: universal newlines would turn a value's CR LF into LF
        p = subprocess.run(self._client_args(database, user, password) + ["--batch"], input=text.encode(),
                           capture_output=True, timeout=timeout)
        p.stdout, p.stderr = p.stdout.decode("utf-8"), p.stderr.decode("utf-8", "replace")
        if check and p.returncode != 0:
            raise AssertionError(f"mariadb client failed: {p.stderr}\nSQL: {text[:2000]}")
        return p

    def query(self, text, database=None):
        """Rows of the last result set as lists of str (None for NULL)."""
        p = self.sql(text, database)
        return [[_unescape_batch(f) for f in line.split("\t")]
                for line in p.stdout.split("\n")[1:] if line != ""] if p.stdout else []

    def create_user(self, name, password, *grants):
        """CREATE USER name@'%' with a password, then each grant with {user} filled in."""
        user = f"'{name}'@'%'"
        stmts = [f"CREATE USER {user} IDENTIFIED BY {string_literal(password)};"]
        stmts += [g.format(user=user).rstrip(";") + ";" for g in grants]
        self.sql("\n".join(stmts))

    def session(self, database=None):
        return Session(self, database)


class Session:
    """One long-lived client connection (for locks, or anything that must
    span statements): execute() returns once the statements have run."""

    def __init__(self, server: MariaDBServer, database=None):
        self.proc = subprocess.Popen(server._client_args(database) + ["--batch", "--unbuffered", "--force",
                                                                      "--skip-column-names"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.n = 0

    def execute(self, text, timeout=60):
        self.n += 1
        marker = f"__done_{self.n}__"
        self.proc.stdin.write(text.rstrip().rstrip(";") + f";\nSELECT '{marker}';\n")
        self.proc.stdin.flush()
        out = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"session ended: {self.proc.stderr.read()}")
            if line.rstrip("\n") == marker:
                return out
            out.append(line.rstrip("\n"))
        raise AssertionError("session statement timed out")

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
