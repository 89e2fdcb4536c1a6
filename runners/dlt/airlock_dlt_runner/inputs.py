"""The job's inputs: the datasource, the credentials file and the plan.

Same rules and, where it makes sense, the same messages as the native runner
(src/runner/runner.c), so a data engineer sees one behaviour whichever runner
a datasource uses:
  - the datasource is JSON or YAML, the whole resource or just its spec, at
    most 1 MiB;
  - the credentials file is a JSON object of key -> string, at most 64 KiB,
    refused unless its mode is 0600 or stricter (after following the
    symlinks a Kubernetes Secret mount uses); its content is never quoted in
    a message, and every value but the user names is registered with the
    redactor (register_secrets);
  - the plan checks every object before anything is written: a table{name,
    connection} per object, connections that exist and have a supported type,
    names that are usable as file names and unique (case-insensitively); a
    file connection's (https) object is a relative path whose last segment
    names the output file, as in the native runner.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field

from .errors import REDACT, RunnerError

MAX_DATASOURCE = 1 << 20
MAX_CREDENTIALS = 64 << 10
MAX_TABLE_NAME = 200

# Connection types this runner collects (README: the driver each one uses).
SUPPORTED_TYPES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "sqlserver", "databricks",
                   "https")
# Types whose objects are files (dlt's filesystem source, files.py), not tables.
FILE_TYPES = ("https",)


def load_datasource(path: str) -> dict:
    """The AnalyticsWorkspaceDataSource in `path` (JSON or YAML)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_DATASOURCE + 1)
    except OSError as e:
        raise RunnerError(f"datasource file {path}: cannot read: {e.strerror}") from None
    if len(data) > MAX_DATASOURCE:
        raise RunnerError(f"datasource file {path}: larger than {MAX_DATASOURCE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunnerError(f"datasource file {path}: not valid UTF-8") from None
    try:
        doc = json.loads(text)
    except ValueError:
        import yaml  # JSON is tried first: it is the operator's form and fastest

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise RunnerError(f"datasource file {path}: not valid JSON or YAML{where}") from None
    if not isinstance(doc, dict):
        raise RunnerError(f"datasource file {path}: expected an AnalyticsWorkspaceDataSource object")
    return doc


def load_credentials(path: str) -> dict[str, str]:
    """The credentials file: key -> string, mode 0600 or stricter."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise RunnerError(f"credentials file {path}: cannot open: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunnerError(f"credentials file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise RunnerError(f"credentials file {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must not be "
                              f"readable or writable by group or others (chmod 600 {path})")
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_CREDENTIALS:
                raise RunnerError(f"credentials file {path}: larger than {MAX_CREDENTIALS} bytes")
            chunks.append(chunk)
    except OSError as e:
        raise RunnerError(f"credentials file {path}: cannot read: {e.strerror}") from None
    finally:
        os.close(fd)

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key")
        return dict(pairs)

    line = 1
    try:
        creds = json.loads(b"".join(chunks).decode("utf-8"), object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:  # its message may quote the file: only the line
        creds, line = None, e.lineno
    except (ValueError, UnicodeDecodeError):
        creds = None
    if not isinstance(creds, dict):
        raise RunnerError(f"credentials file {path}: must be a JSON object of key -> string (line {line})")
    for k, v in creds.items():
        if not isinstance(v, str):
            raise RunnerError(f"credentials file {path}: value of '{k}' must be a string")
    return creds


def register_secrets(credentials: dict[str, str] | None, plan: "Plan") -> None:
    """Every credential is masked in messages except those the plan uses
    only as user names (a message naming the user helps; it is no secret)."""
    if not credentials:
        return
    user_keys, other_keys = set(), set()
    for c in plan.connections:
        keys = c.spec.get("credentials")
        if isinstance(keys, dict):
            for field, key in keys.items():
                (user_keys if field == "userKey" else other_keys).add(key)
    for k, v in credentials.items():
        if k not in user_keys or k in other_keys:
            REDACT.add(v)


@dataclass
class Connection:
    index: int          # position in spec.connections (for messages)
    name: str
    type: str
    spec: dict          # the spec.connections[] entry (url, credentials keys)


@dataclass
class Task:
    table: str          # the object's name as written: names the output file (a file's: its last segment)
    connection: Connection

    @property
    def is_file(self) -> bool:
        return self.connection.type in FILE_TYPES


@dataclass
class Plan:
    tasks: list[Task] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)  # in first-use order


def spec_of(datasource: dict) -> dict:
    spec = datasource.get("spec")
    return spec if isinstance(spec, dict) else datasource


def _check_table_name(i: int, name: str, is_file: bool = False) -> None:
    if not name:
        raise RunnerError(f"spec.objects[{i}].table.name: must not be empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_TABLE_NAME:
        raise RunnerError(f"spec.objects[{i}].table.name: longer than {MAX_TABLE_NAME} bytes")
    if is_file:
        from .files import check_object_path

        check_object_path(i, name)
    elif name.startswith(".") or "/" in name:
        raise RunnerError(f"spec.objects[{i}].table.name '{name}': must not start with '.' or contain '/' "
                          "(it names the output file)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise RunnerError(f"spec.objects[{i}].table.name: contains a control character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise RunnerError(f"spec.objects[{i}].table.name: not valid UTF-8") from None


def make_plan(spec: dict) -> Plan:
    objects = spec.get("objects")
    conns = spec.get("connections")
    if not isinstance(objects, list) or not objects:
        raise RunnerError("spec.objects: the datasource lists no tables to collect")
    if not isinstance(conns, list) or not conns:
        raise RunnerError("spec.connections: the datasource lists no connections")
    plan = Plan()
    by_name: dict[str, Connection] = {}
    seen: dict[str, int] = {}
    for i, obj in enumerate(objects):
        table = obj.get("table") if isinstance(obj, dict) else None
        if not isinstance(table, dict):
            raise RunnerError(f"spec.objects[{i}]: needs table{{name, connection}} (only tables are supported)")
        name, conn = table.get("name"), table.get("connection")
        if not isinstance(name, str):
            raise RunnerError(f"spec.objects[{i}].table.name: Required value")
        if not isinstance(conn, str):
            raise RunnerError(f"spec.objects[{i}].table.connection: Required value")
        c = by_name.get(conn)
        if c is None:
            for ci, entry in enumerate(conns):
                if isinstance(entry, dict) and entry.get("name") == conn:
                    ctype = entry.get("type")
                    if not isinstance(ctype, str):
                        raise RunnerError(f"spec.connections[{ci}].type: Required value")
                    if ctype not in SUPPORTED_TYPES:
                        raise RunnerError(f"spec.connections[{ci}] '{conn}': connection type '{ctype}' is not "
                                          f"supported by airlock-dlt-runner (supported: "
                                          f"{', '.join(SUPPORTED_TYPES)})")
                    c = Connection(ci, conn, ctype, entry)
                    by_name[conn] = c
                    plan.connections.append(c)
                    break
            else:
                raise RunnerError(f"spec.objects[{i}].table.connection: no connection named '{conn}' in "
                                  "spec.connections")
        is_file = c.type in FILE_TYPES
        _check_table_name(i, name, is_file)
        # As the native runner: a file is known by its last segment.
        key = (name.rsplit("/", 1)[-1] if is_file else name).casefold()
        if key in seen:
            raise RunnerError(f"spec.objects[{i}].table.name '{name}': collected twice (objects[{seen[key]}]); "
                              "table names must be unique as they name the output files")
        seen[key] = i
        plan.tasks.append(Task(name, c))
    return plan
