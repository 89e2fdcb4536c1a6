"""https connections: files, downloaded with dlt's filesystem source.

The contract is the native runner's https source (docs/runner.md, "HTTPS
file source"; src/runner/source_https.c), as far as dlt's filesystem source
allows:
  - the url is a base url whose path is a directory (a missing final '/' is
    added); each spec.objects[].table.name is a file path relative to it,
    every byte but unreserved ones and '/' percent-encoded (a '%' in a name is
    sent as %25), empty, '.' and '..' segments refused; the output file is
    DIR/<last segment>;
  - https only: http:// is refused unless AIRLOCK_ALLOW_HTTP=1 (tests); TLS
    peer and host name are always verified, AIRLOCK_CA_FILE names a PEM
    bundle trusted in addition to the system's CAs; a redirect to a url that
    is not https fails, at most 3 redirects are followed, and credentials
    are never sent on to another host (aiohttp drops them across origins);
  - credentials: userKey + passwordKey -> basic auth, passwordKey alone ->
    bearer token, neither -> none; a key the job's credentials lack counts as
    not given (as in the native runner; a 401 then names it), except that a
    missing user beside a password is refused rather than sending the
    password as a bearer token; a user without a password, or a user or
    password inside the url, is refused;
  - a query string on the base url (an Azure SAS token, say) is appended, as
    written, to every request and never shown: messages and provenance name
    scheme, host, port and path only, and every value in it is registered
    with the redactor;
  - check() asks for each file before anything is written (HEAD, or a
    one-byte ranged GET when HEAD gets 405, 501 or 403) and says what is
    wrong: not found, access denied (naming the credential keys), cannot
    reach the server, TLS failed;
  - fetch() lists the file with dlt's `filesystem` resource (fsspec's
    HTTPFileSystem underneath) and streams the FileItem's content into
    <file>.part, hashing it (SHA-256) as it is written; the size is checked
    against Content-Length and, when the server sends one, the hash against
    Repr-Digest, Digest or Content-Digest, as the native runner does.

What dlt's filesystem source cannot do (documented in the README and
docs/runner.md): resume a broken transfer (fsspec's streamed file has no
If-Range), so a broken download leaves no .part and the next attempt starts
the file again; and its listing costs two more requests per file (a GET whose
body is dropped and a HEAD).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import ssl
import time
import urllib.parse
from dataclasses import dataclass

from . import RUNNER_NAME, __version__
from .errors import REDACT, RunnerError, one_line
from .inputs import Connection

TIMEOUT_S = 30          # the native runner's SOURCE_HTTPS_DEFAULT_TIMEOUT_S
MAX_REDIRECTS = 3       # SOURCE_HTTPS_MAX_REDIRECTS
CHUNK = 1 << 20
PROGRESS_INTERVAL_S = 1.0
# Query values this long are masked on their own too (a SAS signature is 40+).
SECRET_QUERY_VALUE_LEN = 12
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def allow_http() -> bool:
    return os.environ.get("AIRLOCK_ALLOW_HTTP") == "1"


@dataclass
class BaseUrl:
    scheme: str
    host: str            # as written (an IPv6 address keeps its brackets)
    port: int | None
    path: str            # the directory, as written; "/" when the url has none
    query: str | None    # as written; secret (never shown)

    def origin(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port else "")

    def directory(self) -> str:
        """The base url without its query, ending in '/'."""
        return self.origin() + self.path + ("" if self.path.endswith("/") else "/")


def parse_base_url(url: object, conn_name: str, http_ok: bool) -> BaseUrl:
    """The native runner's source_https_url_parse, with its messages."""
    where = f"connection '{conn_name}'"
    if not isinstance(url, str) or not url:
        raise RunnerError(f"{where}: the connection has no url; give one such as https://files.example.org/exports/")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise RunnerError(f"{where}: the connection url contains a space or control character; percent-encode it")
    low = url[:8].lower()
    if low.startswith("https://"):
        scheme, rest = "https", url[8:]
    elif low.startswith("http://"):
        if not http_ok:
            raise RunnerError(f"{where}: the connection url uses http://, which is not encrypted; use https:// (only "
                              "tests may set AIRLOCK_ALLOW_HTTP=1)")
        scheme, rest = "http", url[7:]
    else:
        raise RunnerError(f"{where}: the connection url must start with https://")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    auth, tail = rest[:cut], rest[cut:]
    if "@" in auth:
        raise RunnerError(f"{where}: the connection url must not contain a user name or password: put them in the "
                          "Secret named by credentials.userKey / passwordKey")
    port = None
    if auth.startswith("["):
        close = auth.find("]")
        if close <= 1:
            raise RunnerError(f"{where}: the connection url has a bad IPv6 host")
        host, after = auth[:close + 1], auth[close + 1:]
    else:
        host, colon, after = auth.partition(":")
        after = colon + after
    if not host:
        raise RunnerError(f"{where}: the connection url has no host name")
    if after:
        if not after.startswith(":") or len(after) == 1:
            raise RunnerError(f"{where}: the connection url has a bad host or port")
        digits = after[1:]
        if not digits.isascii() or not digits.isdigit() or len(digits) > 5 or not 1 <= int(digits) <= 65535:
            raise RunnerError(f"{where}: the connection url has a bad port")
        port = int(digits)
    path_end = min((i for i in (tail.find(c) for c in "?#") if i >= 0), default=len(tail))
    path = tail[:path_end] or "/"
    query = None
    if tail[path_end:path_end + 1] == "?":
        query = tail[path_end + 1:].split("#", 1)[0] or None
    return BaseUrl(scheme, host, port, path, query)


def check_object_path(i: int, name: str) -> None:
    """A file object's name (inputs.make_plan): a relative path whose last
    segment names the output file, as the native runner's check_table_name."""
    segs = name.split("/")
    if any(s in ("", ".", "..") for s in segs):
        raise RunnerError(f"spec.objects[{i}].table.name '{name}': a file path relative to the connection's url, "
                          "without empty, '.' or '..' segments")
    if segs[-1].startswith("."):
        raise RunnerError(f"spec.objects[{i}].table.name '{name}': the file name must not start with '.'")


def file_name(name: str) -> str:
    """The output file of a file object: its last path segment."""
    return name.rsplit("/", 1)[-1]


def encode_object(name: str) -> str:
    """Each byte of the object's UTF-8 but unreserved ones and '/' as %XX
    (source_https_url_object): the name is a literal file name, never a
    glob or a query."""
    return "".join(chr(b) if b in _UNRESERVED or b == 0x2F else f"%{b:02X}" for b in name.encode("utf-8"))


def parse_digest(header: str, value: str) -> bytes | None:
    """sha-256 from Repr-Digest / Content-Digest (RFC 9530, sha-256=:b64:) or
    Digest (RFC 3230, SHA-256=b64); None when absent or malformed."""
    structured = header.lower() in ("repr-digest", "content-digest")
    for item in value.split(","):
        key, eq, v = item.strip().partition("=")
        if not eq or key.lower() != "sha-256":
            continue
        v = v.strip()
        if structured:
            v = v.split(";", 1)[0].strip()
            if len(v) < 2 or v[0] != ":" or v[-1] != ":":
                return None
            v = v[1:-1]
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw if len(raw) == 32 else None
    return None


class NotHttps(Exception):
    """A request (a redirect's target) that is not https, refused."""


@dataclass
class FileResult:
    size: int
    sha256: str    # hex, of exactly the bytes written


class HttpsSource:
    """One https connection, opened once for all its files."""

    files = True          # the Runner's switch between files and tables
    one_snapshot = False
    profile = "files"

    def __init__(self, conn: Connection, credentials: dict[str, str] | None):
        self.conn = conn
        self.type = conn.type
        self.credentials = credentials
        self.http_ok = allow_http()
        self.base: BaseUrl | None = None
        self.fs = None
        self.loop = None
        self.user_key = self.password_key = None
        self.missing: list[str] = []
        self.basic = False
        self.bearer = False
        url = conn.spec.get("url")
        # The query may be a pre-signed token: masked from here on, whatever
        # prints it (aiohttp's messages quote urls). Whole, and its long
        # values (a signature), not every value: a SAS's spr=https must not
        # turn every "https" into "***".
        if isinstance(url, str) and "?" in url:
            query = url.split("?", 1)[1].split("#", 1)[0]
            REDACT.add(query)
            REDACT.add(urllib.parse.unquote(query))
            for part in query.split("&"):
                v = part.partition("=")[2]
                if len(v) >= SECRET_QUERY_VALUE_LEN:
                    REDACT.add(v)
                    REDACT.add(urllib.parse.unquote_plus(v))

    # -- credentials -----------------------------------------------------------
    def _key(self, field: str) -> str | None:
        keys = self.conn.spec.get("credentials")
        key = keys.get(field) if isinstance(keys, dict) else None
        if key is not None and not isinstance(key, str):
            raise RunnerError(f"spec.connections[{self.conn.index}].credentials.{field}: must be a string")
        return key

    def _credential(self, field: str) -> tuple[str | None, str | None]:
        """(key, value); the value is None when the key names no credential
        of the job's: as the native runner, an https connection may go without."""
        key = self._key(field)
        if key is None or not self.credentials:
            return key, None
        return key, self.credentials.get(key)

    # -- opening -------------------------------------------------------------------
    def open(self) -> None:
        self.base = parse_base_url(self.conn.spec.get("url"), self.conn.name, self.http_ok)
        self.user_key, user = self._credential("userKey")
        self.password_key, password = self._credential("passwordKey")
        name = self.conn.name
        if user is not None and password is None:
            why = (f"credentials.passwordKey '{self.password_key}' is not among the job's credentials"
                   if self.password_key else "credentials.passwordKey is not set")
            raise RunnerError(f"connection '{name}': a user name is given (credentials.userKey '{self.user_key}') "
                              f"but no password: {why}")
        if user is None and password is not None and self.user_key:
            # The native runner would send the password as a bearer token here.
            raise RunnerError(f"connection '{name}': credentials.userKey '{self.user_key}' is not among the job's "
                              "credentials: add it for basic auth, or remove userKey to send passwordKey as a "
                              "bearer token")
        # Keys named but absent: the server's 401 then says which.
        self.missing = [f"{f} '{k}'" for f, k, v in (("userKey", self.user_key, user),
                                                     ("passwordKey", self.password_key, password)) if k and v is None]
        import aiohttp

        headers = {"Accept-Encoding": "identity", "User-Agent": f"{RUNNER_NAME}/{__version__}"}
        options: dict = {"ssl": self._tls(), "max_redirects": MAX_REDIRECTS + 1, "headers": headers}
        if user is not None:
            options["auth"] = aiohttp.BasicAuth(user, password or "")
            self.basic = True
        elif password is not None:
            headers["Authorization"] = f"Bearer {password}"
            self.bearer = True
        http_ok = self.http_ok

        async def https_only(req, handler):
            # Every request, redirects included (aiohttp runs a session's
            # middlewares per hop): the native runner's REDIR_PROTOCOLS.
            if req.url.scheme != "https" and not (http_ok and req.url.scheme == "http"):
                raise NotHttps(req.url.scheme)
            return await handler(req)

        client = {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT_S, sock_read=TIMEOUT_S),
                  # The bytes as served (no transparent gunzip): the file, its size and hash.
                  "auto_decompress": False,
                  "trust_env": False, "middlewares": (https_only,)}
        self.fs = _filesystem_class()(query=self.base.query, encoded=True, block_size=0, client_kwargs=client,
                                      skip_instance_cache=True, **options)
        self.loop = self.fs.loop

    def _tls(self) -> ssl.SSLContext:
        """The system's CAs, plus AIRLOCK_CA_FILE; peer and name verified."""
        ctx = ssl.create_default_context()
        ca = os.environ.get("AIRLOCK_CA_FILE")
        if ca:
            try:
                ctx.load_verify_locations(cafile=ca)
            except (OSError, ssl.SSLError) as e:
                why = getattr(e, "strerror", None) or one_line(str(e))
                raise RunnerError(f"AIRLOCK_CA_FILE {ca}: cannot load it as a PEM certificate bundle: {why}") from None
        return ctx

    def close(self) -> None:
        fs, self.fs = self.fs, None
        if fs is not None and getattr(fs, "_session", None) is not None:
            try:
                fs.close_session(fs.loop, fs._session)
            except Exception:
                pass

    # -- urls --------------------------------------------------------------------
    def display(self, name: str) -> str:
        """A file's url without the query: what messages show."""
        return self.base.directory() + encode_object(name)

    def _what(self, name: str) -> str:
        return f"connection '{self.conn.name}': file '{name}' at {self.display(name)}"

    # -- errors -----------------------------------------------------------------------
    def status_error(self, name: str, status: int) -> RunnerError:
        what = self._what(name)
        if status in (404, 410):
            return RunnerError(f"connection '{self.conn.name}': file '{name}' not found at {self.display(name)} "
                               f"(HTTP {status}): check the object name and the connection url")
        if status in (401, 403):
            if self.basic:
                return RunnerError(f"{what}: access denied (HTTP {status}): check the user name and password in the "
                                   f"job's credentials (credentials.userKey '{self.user_key}', passwordKey "
                                   f"'{self.password_key}')")
            if self.bearer:
                return RunnerError(f"{what}: access denied (HTTP {status}): check the bearer token in the job's "
                                   f"credentials (credentials.passwordKey '{self.password_key}')")
            if self.missing:
                verb = "are" if len(self.missing) > 1 else "is"
                return RunnerError(f"{what}: access denied (HTTP {status}): the server wants credentials, and "
                                   f"credentials.{' and '.join(self.missing)} {verb} not among the job's credentials")
            return RunnerError(f"{what}: access denied (HTTP {status}): the server wants credentials; name them with "
                               "the connection's credentials.userKey / passwordKey")
        if status in (429, 502, 503, 504):
            return RunnerError(f"{what}: the server answered HTTP {status}; try again later")
        return RunnerError(f"{what}: the server answered HTTP {status}")

    def request_error(self, name: str, e: BaseException) -> RunnerError:
        """aiohttp's and fsspec's exceptions as the native runner's messages.
        Their own text is shown only where it cannot carry a url."""
        import asyncio

        import aiohttp

        what = self._what(name)
        if isinstance(e, RunnerError):
            return e
        if isinstance(e, NotHttps) or isinstance(e, aiohttp.NonHttpUrlRedirectClientError):
            return RunnerError(f"{what}: the server redirected to a url that is not https")
        if isinstance(e, aiohttp.TooManyRedirects):
            return RunnerError(f"{what}: more than {MAX_REDIRECTS} redirects")
        if isinstance(e, (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError)):
            cert = getattr(e, "certificate_error", None)
            why = getattr(cert, "verify_message", None) or getattr(cert, "reason", None) or type(e).__name__
            return RunnerError(f"{what}: TLS failed: {one_line(str(why))} (a private CA's certificate can be given "
                               "in AIRLOCK_CA_FILE)")
        if isinstance(e, aiohttp.ClientConnectorError):
            why = e.strerror or (str(e.os_error) if e.os_error else type(e).__name__)
            return RunnerError(f"{what}: cannot reach the server: {one_line(why)} (check the host name in the url and "
                               "that the server is up)")
        if isinstance(e, (asyncio.TimeoutError, TimeoutError, aiohttp.ServerTimeoutError)):
            return RunnerError(f"{what}: cannot reach the server: no answer within {TIMEOUT_S} s (check the host name "
                               "in the url and that the server is up)")
        if isinstance(e, aiohttp.ClientResponseError):
            return self.status_error(name, e.status)
        if isinstance(e, FileNotFoundError):
            return self.status_error(name, 404)
        if isinstance(e, ssl.SSLError):
            return RunnerError(f"{what}: TLS failed: {one_line(e.reason or type(e).__name__)} (a private CA's "
                               "certificate can be given in AIRLOCK_CA_FILE)")
        return RunnerError(f"{what}: {type(e).__name__}: {one_line(str(e)) or 'request failed'}")

    # -- check -----------------------------------------------------------------------
    async def _probe(self, url: str) -> int:
        session = await self.fs.set_session()
        target = self.fs.encode_url(url)
        async with session.head(target, allow_redirects=True, **self.fs.kwargs) as r:
            status = r.status
        if status in (405, 501, 403):
            # HEAD refused (or a pre-signed url signed for GET only): the first byte.
            kw = dict(self.fs.kwargs)
            kw["headers"] = {**kw["headers"], "Range": "bytes=0-0"}
            async with session.get(target, allow_redirects=True, **kw) as r:
                status = r.status
        return status

    def check(self, name: str) -> str:
        """The file exists and may be read; RunnerError saying why not."""
        from fsspec.asyn import sync

        try:
            status = sync(self.loop, self._probe, self.display(name))
        except Exception as e:
            raise self.request_error(name, e) from None
        if not 200 <= status <= 299:
            raise self.status_error(name, status)
        return name

    # -- fetch ---------------------------------------------------------------------------
    def fetch(self, name: str, write, progress) -> FileResult:
        """The file, through dlt's filesystem resource, passed to write(bytes)
        as it arrives (the caller's <file>.part, committed or removed by the
        caller); progress(bytes so far) about once a second."""
        from dlt.sources.filesystem import filesystem

        rel = encode_object(name)
        url = self.base.directory() + rel
        try:
            # file_glob is the encoded path: nothing in it is glob syntax
            # ('*', '[', '?' are percent-encoded), so fsspec asks for exactly
            # this file. fsspec's http listing swallows every failure into
            # "no such file": the check above (again below) says which.
            resource = filesystem(bucket_url=self.base.directory(), credentials=self.fs, file_glob=rel,
                                  files_per_page=1)
            items = [item for page in resource for item in (page if isinstance(page, list) else [page])]
        except Exception as e:
            raise self.request_error(name, _cause(e)) from None
        if len(items) != 1:
            self.check(name)  # raises what is wrong now
            raise RunnerError(f"{self._what(name)}: dlt's filesystem source did not list it (its listing failed): "
                              "run the job again")
        item = items[0]
        # dlt 1.31 builds http:// file urls wrongly (only https is in its url
        # maker), and the url must be exactly the one checked.
        item["file_url"] = url
        h = hashlib.sha256()
        size, total, last = 0, None, time.monotonic()
        try:
            with item.open(mode="rb", compression="disable", block_size=0, size=item.get("size_in_bytes") or None) as f:
                resp = f.r
                headers = resp.headers
                if not 200 <= resp.status <= 299:
                    raise self.status_error(name, resp.status)
                enc = headers.get("Content-Encoding", "identity").strip().lower()
                if "Content-Length" in headers and enc in ("", "identity"):
                    try:
                        total = int(headers["Content-Length"])
                    except ValueError:
                        total = None
                want, digest_from = None, None
                for hname in ("Repr-Digest", "Digest") + (("Content-Digest",) if resp.status == 200 else ()):
                    if hname in headers:
                        want = parse_digest(hname, headers[hname])
                        if want is not None:
                            digest_from = hname
                            break
                while True:
                    chunk = f.read(CHUNK)
                    if not chunk:
                        break
                    write(chunk)
                    h.update(chunk)
                    size += len(chunk)
                    now = time.monotonic()
                    if progress and now - last >= PROGRESS_INTERVAL_S:
                        last = now
                        progress(size)
        except RunnerError:
            raise
        except Exception as e:
            e = _cause(e)
            import asyncio

            import aiohttp

            if isinstance(e, aiohttp.ClientPayloadError) or \
                    (size > 0 and isinstance(e, (aiohttp.ClientError, OSError, asyncio.TimeoutError))):
                of = f" of {total}" if total is not None else ""
                raise RunnerError(f"{self._what(name)}: the download broke off after {size}{of} bytes "
                                  f"({type(e).__name__}); the partial file was removed (this runner does not "
                                  "resume): run the job again") from None
            raise self.request_error(name, e) from None
        if total is not None and size != total:
            raise RunnerError(f"{self._what(name)}: size mismatch: the server announced {total} bytes, {size} arrived; "
                              "the partial file was deleted, run the job again")
        got = h.hexdigest()
        if want is not None and want != h.digest():
            raise RunnerError(f"{self._what(name)}: checksum mismatch: the server announced sha-256 {want.hex()} "
                              f"({digest_from}), the downloaded file has {got}; the partial file was deleted, run "
                              "the job again")
        return FileResult(size, got)

    def describe(self) -> dict:
        """Secret-free: host (and port) and the base path, never the query."""
        return {"host": self.base.host if self.base else "", "database": "", "serverVersion": "",
                "path": self.base.path if self.base else ""}


def _cause(e: BaseException) -> BaseException:
    """dlt wraps a resource's exception (PipeException / ResourceExtractionError):
    the library's own one says what happened."""
    seen = 0
    while seen < 5 and type(e).__module__.startswith("dlt") and (e.__cause__ or e.__context__):
        e = e.__cause__ or e.__context__
        seen += 1
    return e


def _filesystem_class():
    """fsspec's HTTPFileSystem, with the connection's query appended, as
    written, to every url it requests (aiohttp's `params` would re-encode a
    pre-signed token and break its signature)."""
    import yarl
    from fsspec.implementations.http import HTTPFileSystem

    class QueryHTTPFileSystem(HTTPFileSystem):
        def __init__(self, *args, query: str | None = None, **kwargs):
            self._query = query
            super().__init__(*args, **kwargs)

        def encode_url(self, url):
            if self._query:
                url = f"{url}?{self._query}"
            return yarl.URL(url, encoded=True)

    return QueryHTTPFileSystem
