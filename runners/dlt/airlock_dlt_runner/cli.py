"""python -m airlock_dlt_runner: the dlt job runner's command line and run.

Order of work, as the native runner's (docs/runner.md):
  1. inputs read and checked; every connection opened, every table found
     and reflected by dlt and every file asked for (https) before anything is
     written (bad input changes nothing, DIR is not even created);
  2. objects collected in spec order, each into <file>.part, fsynced,
     renamed; on failure the .part goes and finished ones stay;
  3. ro-crate-metadata.json written by `airlock rocrate build` in both cases,
     with CompletedActionStatus or FailedActionStatus and the error.

dlt runs with telemetry off and its data, project and local directories in
the run's private temporary directory, which is removed at exit: nothing is
shared between runs and nothing of dlt's lands in DIR.
"""
from __future__ import annotations

import datetime
import logging
import os
import shutil
import signal
import sys
import tempfile
import time

from . import RUNNER_NAME, __version__
from .errors import RunnerError, UsageError, describe_exception, one_line

PROG = "airlock-dlt-runner"
FORMATS = ("csv", "csv.gz", "parquet")
PROGRESS_INTERVAL_S = 1.0

USAGE = f"""usage: python -m airlock_dlt_runner [--datasource FILE] [--output DIR] [--credentials FILE]
                                  [--format csv|csv.gz|parquet] [--quiet]

The airlock's dlt job runner ({RUNNER_NAME} {__version__}). Collects every spec.objects[].table of an
AnalyticsWorkspaceDataSource (JSON or YAML) with dlt's sql_database source into DIR/<table>.csv
(RFC 4180, CRLF, header row), DIR/<table>.csv.gz or DIR/<table>.parquet, downloads https files with
dlt's filesystem source into DIR/<file name> as they are, and writes DIR/ro-crate-metadata.json
with `airlock rocrate build`.
Connection types: sqlite, postgresql, mysql, mariadb, mssql, databricks, https (runners/dlt/README.md).
The credentials file is a JSON object of key -> string with mode 0600 or stricter.
A flag that is absent is taken from the environment: --datasource from $AIRLOCK_DATASOURCE_FILE,
--output from $AIRLOCK_OUTPUT_DIR, --credentials from $AIRLOCK_CREDENTIALS_FILE, --format from
$AIRLOCK_OUTPUT_FORMAT (default csv). Flags win.
The airlock binary is $AIRLOCK_BIN, else airlock on $PATH, else the repository's bin/airlock.
Exit status: 0 success, 1 failure, 2 usage error.
"""


class Options:
    def __init__(self) -> None:
        self.datasource: str | None = None
        self.output: str | None = None
        self.credentials: str | None = None
        self.format: str | None = None
        self.quiet = False
        self.help = False


def parse_args(argv: list[str]) -> Options:
    """--name value or --name=value, as the native runner's cli_take_opt."""
    o = Options()
    names = {"--datasource": "datasource", "--output": "output", "--credentials": "credentials",
             "--format": "format"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--help", "-h"):
            o.help = True
        elif a in ("--quiet", "-q"):
            o.quiet = True
        else:
            name, eq, value = a.partition("=")
            if name not in names:
                raise UsageError(f"unknown argument '{a}'")
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{a} needs a value")
                i += 1
                value = argv[i]
            setattr(o, names[name], value)
        i += 1
    return o


def _flag_or_env(flag: str | None, env: str) -> str | None:
    if flag is not None:
        return flag
    v = os.environ.get(env)
    return v if v else None


def now_rfc3339() -> str:
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class Terminated(RunnerError):
    pass


def _on_signal(signum, _frame):
    raise Terminated(f"stopped by signal {signal.Signals(signum).name} (the job was cancelled or timed out)")


class _RedactingHandler(logging.Handler):
    """dlt's and Python's warnings as progress lines, secrets removed."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{PROG}: {record.levelname.lower()}: {one_line(record.getMessage())}"
            if line not in self.seen:  # dlt repeats itself (reflection, then extraction)
                self.seen.add(line)
                print(line, file=sys.stderr, flush=True)
        except Exception:
            pass


def _setup_dlt_env(tmp: str) -> None:
    """Before dlt is imported: telemetry off, every dlt directory private."""
    for sub in ("data", "project", "local"):
        os.makedirs(os.path.join(tmp, "dlt-" + sub), mode=0o700, exist_ok=True)
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["DLT_DATA_DIR"] = os.path.join(tmp, "dlt-data")
    os.environ["DLT_PROJECT_DIR"] = os.path.join(tmp, "dlt-project")
    os.environ["DLT_LOCAL_DIR"] = os.path.join(tmp, "dlt-local")


class Runner:
    def __init__(self, ds_path: str, out_dir: str, cred_path: str | None, fmt: str, progress: bool, tmp: str):
        self.ds_path = ds_path
        self.out_dir = out_dir
        self.cred_path = cred_path
        self.fmt = fmt
        self.progress = progress
        self.tmp = tmp
        self.sources: dict[str, object] = {}

    def say(self, line: str) -> None:
        if self.progress:
            print(one_line(line, 2000), file=sys.stderr, flush=True)

    def run(self, start: str) -> int:
        from .inputs import load_credentials, load_datasource, make_plan, register_secrets, spec_of

        datasource = load_datasource(self.ds_path)
        credentials = load_credentials(self.cred_path) if self.cred_path else None
        plan = make_plan(spec_of(datasource))
        register_secrets(credentials, plan)

        from . import crate

        airlock = crate.find_airlock()
        _setup_dlt_env(self.tmp)
        handler = _RedactingHandler(logging.WARNING)
        # Every library's log records (drivers, connectors, Python warnings)
        # reach stderr only through this handler: one line, secrets masked.
        logging.captureWarnings(True)
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.WARNING)
        import dlt
        from dlt.common import logger as dlt_logger

        from .files import HttpsSource
        from .inputs import FILE_TYPES
        from .sources import Source, redact_url_parts

        # dlt (re)creates its logger "dlt" when it resolves its runtime settings
        # and reuses the first handler it finds there: make that ours.
        dlt_log = logging.getLogger("dlt")
        dlt_log.setLevel(logging.WARNING)
        dlt_log.addHandler(handler)
        dlt_log.propagate = False
        dlt_logger.LOGGER = dlt_log
        version = f"{__version__} (dlt {dlt.__version__})"

        # 1. Everything that can be checked, before anything is written.
        for c in plan.connections:
            redact_url_parts(c)
        prepared = []
        try:
            for c in plan.connections:
                src = HttpsSource(c, credentials) if c.type in FILE_TYPES else Source(c, credentials)
                self.sources[c.name] = src
                src.open()
            for t in plan.tasks:
                src = self.sources[t.connection.name]
                ref = src.check(t.table)
                if t.is_file:
                    prepared.append((t, src, ref, None, None))
                    continue
                resource, table, types = src.resource(ref)
                prepared.append((t, src, resource, table, types))
            try:
                os.makedirs(self.out_dir, mode=0o755, exist_ok=True)
            except OSError as e:
                raise RunnerError(f"cannot create the output directory {self.out_dir}: {e.strerror}") from None

            # 2. The tables.
            extras: dict[str, dict] = {}
            error = None
            for t, src, resource, table, types in prepared:
                try:
                    if t.is_file:
                        self.export_file(t.table, src, extras)
                    else:
                        self.export(t.table, src, resource, table, types, extras)
                except RunnerError as e:
                    error = one_line(str(e))
                    break
                except Exception as e:  # a driver or conversion error mid-table
                    error = one_line(f"connection '{t.connection.name}': table '{t.table}': "
                                     f"{describe_exception(e)}")
                    break
            end = now_rfc3339()
            self._close_sources()  # ends PostgreSQL's snapshot before the (slow) hashing

            # 3. The metadata, in both cases.
            action = self.action(plan, start, end, error, version)
            try:
                crate.build(airlock, self.out_dir, self.ds_path, action, extras, self.tmp)
            except RunnerError as e:
                if error is None:
                    raise
                self.say(f"{PROG}: also: {e}")
        finally:
            self._close_sources()
        if error is not None:
            raise RunnerError(error)
        return 0

    def _close_sources(self) -> None:
        for src in self.sources.values():
            try:
                src.close()
            except Exception:  # closing is best effort: the data is already written
                pass

    def export(self, name: str, src, resource, table, types: dict[str, str], extras: dict) -> None:
        from .writers import FORMATS, open_writer

        t0 = time.monotonic()
        last = t0
        rows = 0
        names: list[str] | None = None
        writer = open_writer(self.fmt, self.out_dir, name, src.profile)
        try:
            for batch in resource:
                if not hasattr(batch, "num_rows"):  # dlt's empty hint item, or anything not arrow
                    continue
                if names is None:
                    names = list(batch.column_names)
                writer.write(batch)
                rows += batch.num_rows
                now = time.monotonic()
                if now - last >= PROGRESS_INTERVAL_S:
                    last = now
                    self.say(f"{name}: {rows} rows ...")
            if names is None:
                names = [c.name for c in table.columns]
            writer.finish(names, self._empty_schema(resource, names) if self.fmt == "parquet" else None)
        except BaseException as e:
            writer.abort()
            if isinstance(e, RunnerError) and not isinstance(e, Terminated):
                raise RunnerError(f"connection '{src.conn.name}': table '{name}': {e}") from None
            raise
        file = name + FORMATS[self.fmt]
        extras[file] = {"rowCount": rows, "columns": names, "columnTypes": [types.get(n, "") for n in names]}
        self.say(f"{name}: {rows} rows, {len(names)} columns written to {file} ({time.monotonic() - t0:.3f} s)")

    def export_file(self, name: str, src, extras: dict) -> None:
        """One file of a file connection, as it is: DIR/<last segment>, via
        <file>.part; its size and SHA-256 (hashed while writing) go to the
        crate so `airlock rocrate build` need not read it again."""
        from .files import file_name
        from .writers import PartFile

        t0 = time.monotonic()
        file = file_name(name)
        part = PartFile(self.out_dir, file)
        try:
            def write(data: bytes) -> None:
                try:
                    part.f.write(data)
                except OSError as e:
                    raise part.io_error(e) from None

            result = src.fetch(name, write, lambda n: self.say(f"{name}: {n} bytes ..."))
            part.commit()
        except BaseException:
            part.abort()
            raise
        extras[file] = {"size": result.size, "sha256": result.sha256}
        self.say(f"{name}: {result.size} bytes written to {file} ({time.monotonic() - t0:.3f} s)")

    @staticmethod
    def _empty_schema(resource, names: list[str]):
        """An empty table's Parquet schema, from dlt's reflected column types."""
        import pyarrow as pa
        from dlt.common.destination import DestinationCapabilitiesContext
        from dlt.common.libs.pyarrow import dlt_column_to_arrow_field

        caps = DestinationCapabilitiesContext.generic_capabilities()
        cols = resource.compute_table_schema().get("columns", {})
        fields = []
        for n in names:
            c = cols.get(n)
            try:
                fields.append(dlt_column_to_arrow_field(c, caps, "UTC") if c and c.get("data_type")
                              else pa.field(n, pa.null()))
            except Exception:
                fields.append(pa.field(n, pa.null()))
        return pa.schema(fields)

    def action(self, plan, start: str, end: str, error: str | None, version: str) -> dict:
        """The CreateAction for `airlock rocrate build --action` (secret-free)."""
        import dlt

        whats, names, types, hosts, dbs, versions = [], [], [], [], [], []
        for c in plan.connections:
            src = self.sources[c.name]
            d = src.describe()
            what = f"{c.type} {'files' if getattr(src, 'files', False) else 'database'}"
            if d["database"]:
                what += f" {d['database']}"
            if d["host"]:
                what += f" on {d['host']}"
            whats.append(what)
            names.append(c.name)
            types.append(c.type)
            hosts.append(d["host"])
            dbs.append(d["database"])
            versions.append(d["serverVersion"])
        dbconns = [c for c in plan.connections if not getattr(self.sources[c.name], "files", False)]
        snap = all(getattr(self.sources[c.name], "one_snapshot", False) for c in dbconns)
        how = ("each database read from one snapshot" if snap else "each table read in its own transaction")
        hows, extractors = [], []
        if dbconns:
            hows.append(f"extracted with dlt {dlt.__version__} sql_database (pyarrow backend), {how}")
            extractors.append(f"dlt {dlt.__version__} sql_database, pyarrow backend")
        if len(dbconns) < len(plan.connections):
            hows.append(f"files downloaded with dlt {dlt.__version__} filesystem (fsspec http)")
            extractors.append(f"dlt {dlt.__version__} filesystem, fsspec http")
        tables = [t.table for t in plan.tasks]
        return {
            "runnerName": RUNNER_NAME,
            "runnerVersion": version,
            "startTime": start,
            "endTime": end,
            "succeeded": error is None,
            "error": error,
            "sourceName": whats[0] if len(whats) == 1 else f"{len(whats)} sources",
            "sourceDescription": f"{'; '.join(whats)}, {'; '.join(hows)}; {'objects' if dbconns else 'files'}: "
                                 f"{', '.join(tables)}",
            "sourceExtra": {
                "airlock:connectionTypes": types,
                "airlock:connections": names,
                "airlock:tables": tables,
                "airlock:hosts": hosts,
                "airlock:databases": dbs,
                "airlock:serverVersions": versions,
                "airlock:extractor": "; ".join(extractors),
            },
        }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        o = parse_args(argv)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        print(USAGE, file=sys.stderr, end="")
        return 2
    if o.help:
        print(USAGE, end="")
        return 0
    ds = _flag_or_env(o.datasource, "AIRLOCK_DATASOURCE_FILE")
    out = _flag_or_env(o.output, "AIRLOCK_OUTPUT_DIR")
    cred = _flag_or_env(o.credentials, "AIRLOCK_CREDENTIALS_FILE")
    fmt = _flag_or_env(o.format, "AIRLOCK_OUTPUT_FORMAT") or "csv"
    if not ds or not out:
        print(f"{PROG}: --datasource and --output are required (or $AIRLOCK_DATASOURCE_FILE and "
              "$AIRLOCK_OUTPUT_DIR)", file=sys.stderr)
        print(USAGE, file=sys.stderr, end="")
        return 2
    if fmt not in FORMATS:
        print(f"{PROG}: --format {fmt} is not supported (supported: {', '.join(FORMATS)})", file=sys.stderr)
        return 2
    start = now_rfc3339()
    tmp = tempfile.mkdtemp(prefix="airlock-dlt-")
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        return Runner(ds, out, cred, fmt, not o.quiet, tmp).run(start)
    except RunnerError as e:
        print(f"{PROG}: {one_line(str(e))}", file=sys.stderr, flush=True)
        return 1
    except Exception as e:  # never a traceback (it could show values); say what broke
        print(f"{PROG}: unexpected {type(e).__name__}: {describe_exception(e)}", file=sys.stderr, flush=True)
        return 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        shutil.rmtree(tmp, ignore_errors=True)
