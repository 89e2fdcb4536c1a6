"""Output files: CSV (RFC 4180, as the native runner writes it), CSV.gz and
Parquet, each written to <file>.part, fsynced and renamed, so a file with
its final name is always complete.

CSV, as src/runner/csv.h promises: UTF-8, CRLF record ends, ',' separator, a
header row; a field is quoted when it contains ',', '"', CR or LF (quotes
doubled); NULL is an empty unquoted field and the empty string is "";
binary is standard base64 (an empty value "", like the empty string). Values are formatted per source family
(`profile`) to look like the native runner's output for that database:

  type          sqlite                    postgresql             mysql / other
  float         %.15g, else %.17g, with   shortest exact form,   as postgresql
                a decimal point ("1.0",   PostgreSQL style ("1",
                "1.0e+20")                "1e+20", "Infinity")
  boolean       1 / 0                     t / f                  1 / 0 (mysql), true / false
  timestamp     YYYY-MM-DD HH:MM:SS[.ffffff without trailing zeros]; with a time zone in UTC + "+00"
  date, time    YYYY-MM-DD, HH:MM:SS[.ffffff]
  decimal       exact, with the column's scale ("1.50")
  list, struct  JSON

Encoding is vectorised with pyarrow.compute (each batch of rows becomes one
buffer written with one call); only floats and binary values are formatted
one by one in Python.
"""
from __future__ import annotations

import base64
import decimal
import gzip
import json
import math
import os

import pyarrow as pa
import pyarrow.compute as pc

from .errors import RunnerError

_LS = pa.large_string()
_SEP = pa.scalar(",", _LS)
_CRLF = pa.scalar("\r\n", _LS)
_QUOTE = pa.scalar('"', _LS)
_EMPTY = pa.scalar("", _LS)
_NEEDS_QUOTES = '[,"\r\n]'


# -- value formatting --------------------------------------------------------

def format_double_sqlite(v: float) -> str:
    """src/runner/csv.c csv_format_double: %.15g when it reads back exactly,
    else %.17g; always with a decimal point; Inf, -Inf, NaN."""
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "Inf" if v > 0 else "-Inf"
    s = "%.15g" % v
    if float(s) != v:
        s = "%.17g" % v
    if "." not in s:
        e = s.find("e")
        s = s + ".0" if e < 0 else s[:e] + ".0" + s[e:]
    return s


def format_double_pg(v: float) -> str:
    """PostgreSQL's float8out with extra_float_digits >= 1: the shortest
    string that reads back exactly, fixed notation for decimal exponents
    -4..14, else d.ddde+XX; Infinity, -Infinity, NaN."""
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    r = repr(v)  # shortest round-trip digits
    a = abs(v)
    if 1e-4 <= a < 1e15 and "e" not in r:
        return r[:-2] if r.endswith(".0") else r
    d = decimal.Decimal(r)
    if a >= 2.0 ** 53:
        # Python accepts a decimal lying exactly on an edge of the value's
        # rounding interval (it reads back by ties-to-even); PostgreSQL's Ryu
        # does not and prints the next longer form instead
        # (2.1024339862708208e+16, not 2.102433986270821e+16). Only integers
        # (>= 2^53) have edges short enough to be a shortest form.
        exact, ulp = decimal.Decimal(a), decimal.Decimal(math.ulp(a))
        below = ulp / 2 if math.frexp(a)[0] == 0.5 else ulp  # the gap halves below a power of two
        edges = (exact + ulp / 2, exact - below / 2)
        if abs(d) in edges:
            for k in range(len(d.as_tuple().digits) + 1, 18):
                cand = decimal.Decimal("%.*e" % (k - 1, a))
                if float(cand) == a and cand not in edges:
                    d = cand.copy_sign(decimal.Decimal(v))
                    break
    exp10 = d.adjusted()
    if -4 <= exp10 < 15:
        return format(d.normalize(), "f")
    sign, digits, _ = d.as_tuple()
    digits_s = "".join(map(str, digits)).rstrip("0") or "0"
    mant = digits_s[0] + ("." + digits_s[1:] if len(digits_s) > 1 else "")
    return f"{'-' if sign else ''}{mant}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"


def _json_default(o):
    if isinstance(o, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(o)).decode("ascii")
    return str(o)


class CsvEncoder:
    def __init__(self, profile: str):
        self.profile = profile
        self.fmt_double = format_double_sqlite if profile == "sqlite" else format_double_pg
        self.bools = {"postgresql": ("t", "f"), "sqlite": ("1", "0"), "mysql": ("1", "0")}.get(
            profile, ("true", "false"))

    # Each returns (large_string array with nulls, whether values may need quoting).
    def _text(self, arr: pa.Array):
        t = arr.type
        if pa.types.is_dictionary(t):
            return self._text(arr.dictionary_decode())
        if pa.types.is_null(t):
            return pa.nulls(len(arr), _LS), False
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return arr.cast(_LS), True
        if pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_date(t):
            return arr.cast(_LS), False
        if pa.types.is_floating(t):
            f = self.fmt_double
            return pa.array([None if v is None else f(v) for v in arr.to_pylist()], _LS), False
        if pa.types.is_boolean(t):
            yes, no = self.bools
            return pc.if_else(arr, pa.scalar(yes, _LS), pa.scalar(no, _LS)), False
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            # base64 never needs quotes, but an empty value must be "" (not NULL)
            return pa.array([None if v is None else base64.b64encode(v).decode("ascii") for v in arr.to_pylist()],
                            _LS), True
        if pa.types.is_timestamp(t):
            s = pc.cast(arr, _LS)
            s = pc.replace_substring_regex(s, r"(\.\d*?)0+(Z?)$", r"\1\2")
            s = pc.replace_substring_regex(s, r"\.(Z?)$", r"\1")
            if t.tz is not None:  # pyarrow writes UTC as "Z"; PostgreSQL (TimeZone UTC) writes "+00"
                s = pc.replace_substring_regex(s, r"Z$", "+00")
            return s, False
        if pa.types.is_time(t):
            s = pc.cast(arr, _LS)
            s = pc.replace_substring_regex(s, r"(\.\d*?)0+$", r"\1")
            return pc.replace_substring_regex(s, r"\.$", ""), False
        if pa.types.is_nested(t):
            return pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=_json_default)
                             for v in arr.to_pylist()], _LS), True
        try:
            return pc.cast(arr, _LS), True
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            return pa.array([None if v is None else str(v) for v in arr.to_pylist()], _LS), True

    @staticmethod
    def _quoted(s: pa.Array) -> pa.Array:
        needs = pc.or_(pc.match_substring_regex(s, _NEEDS_QUOTES), pc.equal(pc.binary_length(s), 0))
        q = pc.binary_join_element_wise(_QUOTE, pc.replace_substring(s, '"', '""'), _QUOTE, _EMPTY)
        return pc.if_else(needs, q, s)

    def header(self, names: list[str]) -> bytes:
        out = []
        for n in names:
            if n == "" or any(c in n for c in ',"\r\n'):
                n = '"' + n.replace('"', '""') + '"'
            out.append(n)
        return (",".join(out) + "\r\n").encode("utf-8")

    def encode(self, table: pa.Table) -> memoryview | bytes:
        """The batch's records (CRLF-terminated) as one buffer."""
        n = table.num_rows
        if n == 0:
            return b""
        if table.num_columns == 0:
            return b"\r\n" * n
        cols = []
        for col in table.columns:
            arr = col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks)
            s, may_quote = self._text(arr)
            if may_quote:
                s = self._quoted(s)
            cols.append(pc.fill_null(s, _EMPTY))
        lines = pc.binary_join_element_wise(*cols, _SEP) if len(cols) > 1 else cols[0]
        lines = pc.binary_join_element_wise(lines, _EMPTY, _CRLF)
        if isinstance(lines, pa.ChunkedArray):
            lines = pa.concat_arrays(lines.chunks)
        offsets = memoryview(lines.buffers()[1]).cast("q")
        start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
        return memoryview(lines.buffers()[2])[start:end]


# -- files ---------------------------------------------------------------------

def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PartFile:
    """DIR/<name>.part, renamed to DIR/<name> by commit(); removed by abort()."""

    def __init__(self, out_dir: str, name: str):
        self.out_dir = out_dir
        self.name = name
        self.final = os.path.join(out_dir, name)
        self.part = self.final + ".part"
        try:
            fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise RunnerError(f"cannot create {self.part}: {e.strerror}") from None
        self.f = os.fdopen(fd, "wb", buffering=1 << 18)

    def io_error(self, e: OSError) -> RunnerError:
        hint = " (free space on the output volume, then retry)" if e.errno == 28 else ""
        return RunnerError(f"cannot write {self.part}: {e.strerror}{hint}")

    def commit(self) -> None:
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
        except OSError as e:
            raise self.io_error(e) from None
        try:
            os.rename(self.part, self.final)
            fsync_dir(self.out_dir)
        except OSError as e:
            raise RunnerError(f"cannot rename {self.part} to {self.final}: {e.strerror}") from None

    def abort(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass
        try:
            os.unlink(self.part)
        except FileNotFoundError:
            pass


class CsvWriter:
    def __init__(self, part: PartFile, profile: str, gzip_it: bool):
        self.part = part
        self.enc = CsvEncoder(profile)
        self.out = gzip.GzipFile(fileobj=part.f, mode="wb", compresslevel=6, mtime=0) if gzip_it else part.f
        self.wrote_header = False

    def _write(self, data) -> None:
        try:
            self.out.write(data)
        except OSError as e:
            raise self.part.io_error(e) from None

    def write(self, table: pa.Table) -> None:
        if not self.wrote_header:
            self._write(self.enc.header(table.column_names))
            self.wrote_header = True
        self._write(self.enc.encode(table))

    def finish(self, names: list[str], schema: pa.Schema | None) -> None:
        if not self.wrote_header:  # an empty table: the header alone
            self._write(self.enc.header(names))
            self.wrote_header = True
        if self.out is not self.part.f:
            try:
                self.out.close()  # the gzip trailer; the file itself stays open
            except OSError as e:
                raise self.part.io_error(e) from None
        self.part.commit()

    def abort(self) -> None:
        self.part.abort()


class ParquetWriter:
    def __init__(self, part: PartFile):
        self.part = part
        self.writer = None
        self.schema: pa.Schema | None = None

    def _open(self, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        self.schema = schema
        self.writer = pq.ParquetWriter(self.part.f, schema)

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self._open(table.schema)
        elif not table.schema.equals(self.schema, check_metadata=False):
            try:
                table = table.cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
                raise RunnerError(f"the columns' types changed between batches of rows ({e}); the Parquet file "
                                  "needs one type per column (use --format csv)") from None
        try:
            self.writer.write_table(table)
        except OSError as e:
            raise self.part.io_error(e) from None

    def finish(self, names: list[str], schema: pa.Schema | None) -> None:
        if self.writer is None:
            self._open(schema if schema is not None else pa.schema([pa.field(n, pa.null()) for n in names]))
        try:
            self.writer.close()
        except OSError as e:
            raise self.part.io_error(e) from None
        self.part.commit()

    def abort(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # a full disk, say: the file goes anyway
                pass
        self.part.abort()


FORMATS = {"csv": ".csv", "csv.gz": ".csv.gz", "parquet": ".parquet"}


def open_writer(fmt: str, out_dir: str, table: str, profile: str):
    part = PartFile(out_dir, table + FORMATS[fmt])
    if fmt == "parquet":
        return ParquetWriter(part)
    return CsvWriter(part, profile, gzip_it=(fmt == "csv.gz"))
