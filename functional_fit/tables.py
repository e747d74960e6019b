"""CSV input: two numeric columns of a class's own file, read fast, refused in one line.

A class brings its own CSV: saved by Excel (a UTF-8 byte-order mark, ";" between fields,
CRLF line ends), with other columns beside the two it wants, and now and then an empty cell.
`read_table` reads such a file through numpy's C reader (`np.loadtxt`): 10^6 rows in well
under a second, with no Python loop over the rows. Only a file that the fast path refuses (a
missing or non-numeric value, a quoted field, a broken row) is read again row by row, with
the `csv` module, to name the line and the column of the first problem, or, with
``dropna=True``, to leave such rows out.

`functional_fit.data` re-exports `read_table`, `read_csv` and `Table`.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from typing import NamedTuple

import numpy as np

from functional_fit import checks as _checks
from functional_fit.checks import InputError

#: Field values read as a missing value (compared after stripping spaces, ignoring case).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
#: The delimiters sniffed from the header row, in order of preference on a tie.
DELIMITERS = (",", ";", "\t")
#: How much of a bad line or value an error message quotes.
EXCERPT = 40
#: A number with thousands separators: 1,000 or 12,345,678.9.
_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")


class Table(NamedTuple):
    """Two numeric columns read from a CSV file by `read_table`."""

    x: np.ndarray  # (n,) float64
    y: np.ndarray  # (n,) float64
    dropped: int  # rows left out for a missing or non-numeric value (dropna=True), else 0
    columns: tuple  # the names of the x and y columns, as in the header
    delimiter: str  # "," ";" or "\t", sniffed from the header row


def _excerpt(text: str, limit: int = EXCERPT) -> str:
    """`text` quoted, cut to `limit` characters with an ellipsis: an error quotes, never dumps."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _shown(path: str) -> str:
    """The path as typed, quoted; a very long one shortened in the middle."""
    return repr(path) if len(path) <= 160 else repr(path[:100] + "…" + path[-50:])


def _stream_name(stream) -> str:
    """How a message names a stream: its ``name`` (``<stdin>``, an open file's path) or
    ``<stream>``."""
    name = getattr(stream, "name", None)
    return name if isinstance(name, str) else "<stream>"


def _read_stream(stream) -> tuple[str, bytes | str]:
    """(its name, its whole content) of an open file or text stream, or InputError."""
    name = _stream_name(stream)
    try:
        content = stream.read()
    except (OSError, ValueError) as exc:  # closed, not readable, a decoding error
        raise InputError(f"data: cannot read {_shown(name)}: {exc}") from None
    if not isinstance(content, bytes | str):
        raise InputError(f"data: reading {_shown(name)} gave {type(content).__name__}, not text")
    return name, content


def _open_data(path) -> tuple[str, bytes | str]:
    """(the path as typed, the file's bytes), or InputError saying what the path is instead.

    An open file or text stream (anything with ``read``) is read whole: (its name, its content).
    """
    if hasattr(path, "read") and not isinstance(path, str | os.PathLike):
        return _read_stream(path)
    typed = os.fspath(path) if isinstance(path, str | os.PathLike) else path
    if not isinstance(typed, str):
        raise InputError(f"data: the path must be a string or a path, got {typed!r}")
    if typed == "":
        raise InputError("data: the path is empty (''); expected a CSV file")
    shown = _shown(typed)
    try:
        mode = os.stat(typed).st_mode  # before open(): opening a FIFO would block
    except FileNotFoundError:
        raise InputError(f"data: no such file {shown}") from None
    except PermissionError:
        raise InputError(f"data: cannot read {shown}: permission denied (on the file or a "
                         "folder above it)") from None
    except OSError as exc:  # a name too long, a loop of links, ...
        raise InputError(f"data: cannot read {shown}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"data: {shown} is a directory; expected a CSV file")
    if not stat.S_ISREG(mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise InputError(f"data: {shown} is {kind}; expected a CSV file")
    try:
        with open(typed, "rb") as fh:
            return typed, fh.read()
    except PermissionError:
        raise InputError(f"data: cannot read {shown}: permission denied") from None
    except OSError as exc:
        raise InputError(f"data: cannot read {shown}: {exc.strerror or exc}") from None


def _sniff(line: str) -> str:
    """The delimiter of a header row: whichever of `DELIMITERS` splits it into most fields."""
    counts = []
    for d in DELIMITERS:
        try:
            counts.append(len(next(csv.reader([line], delimiter=d))))
        except (csv.Error, StopIteration):
            counts.append(0)
    return DELIMITERS[int(np.argmax(counts))]  # the first on a tie: "," when there is one field


def _fields_per_line(body: str, delimiter: str) -> tuple[np.ndarray, np.ndarray]:
    """(fields, blank) per line of an unquoted `body`, counted with numpy, not a Python loop.

    Returns:
      (L,) int field count of each line and (L,) bool, True for an empty line.
    """
    buf = np.frombuffer(body.encode(), dtype=np.uint8)  # one byte per ASCII delimiter/newline
    ends = np.flatnonzero(buf == 10)  # (L',) the "\n" of each line
    if buf.size and buf[-1] != 10:
        ends = np.append(ends, buf.size)  # a last line without its "\n"
    starts = np.concatenate([[0], ends[:-1] + 1])  # (L,)
    delims = np.flatnonzero(buf == ord(delimiter))  # sorted positions
    fields = np.searchsorted(delims, ends) - np.searchsorted(delims, starts) + 1
    return fields, ends == starts


def _number(value: str):
    """float(value), or None for a missing value; ValueError for anything else.

    Python's ``float`` also reads digits grouped with ``_`` and digits of other scripts
    ("１２"); numpy's reader, which reads most files, does not. Neither is a number here, so
    that a file means the same whichever path reads it.
    """
    text = value.strip()  # both readers skip white space around a number, NBSP included
    if text.lower() in MISSING:
        return None
    if "_" in text or not text.isascii():
        raise ValueError(value)
    return float(text)


def _reads(text: str) -> bool:
    try:
        _number(text)
    except ValueError:
        return False
    return True


def _hint(value: str) -> str:
    """What a value that is not a number may have meant, as "; ..." (or "")."""
    v = value.strip()
    if "_" in v:
        return "; digits grouped with '_'? write them without it"
    if not v.isascii():
        return ("; a character that is not ASCII (digits of another script?): write ASCII "
                "digits and a decimal point")
    grouped = _GROUPED.fullmatch(v) is not None
    decimal = v.count(",") == 1 and _reads(v.replace(",", "."))
    if grouped and decimal:
        return (f"; a thousands separator ({v.replace(',', '')}) or a decimal comma "
                f"({v.replace(',', '.')})? write the number without separators, with a "
                "decimal point")
    if grouped:
        return f"; a thousands separator? write {v.replace(',', '')}"
    if decimal:
        return "; a decimal comma? write a decimal point"
    return ""


def _not_a_number(where: str, column: str, value: str) -> InputError:
    return InputError(f"{where}, column {column!r}: {_excerpt(value)} is not a number"
                      f"{_hint(value)} (dropna leaves such rows out)")


def _shown_names(names: list) -> str:
    """Header names for a message: one with an invisible character (a byte-order mark, a
    NUL) is quoted with escapes, so that the reader sees it."""
    return ", ".join(n if n.isprintable() else ascii(n) for n in names)


def _row_length(where: str, line: int, got: int, want: int) -> InputError:
    more = "more" if got > want else "fewer"
    return InputError(f"{where} line {line} has {got} field{'s' * (got != 1)}, {more} than the "
                      f"{want} of the header row")


def _csv_error(where: str, line: int, exc: csv.Error, text: str) -> InputError:
    """A `csv.Error` as one line: what is wrong, the line, and a short excerpt of it."""
    what = str(exc)
    if "field larger than field limit" in what:
        what = f"a field longer than {csv.field_size_limit()} characters"
    elif "unexpected end of data" in what:
        what = "a quote is not closed"
    return InputError(f"{where} line {line}: {what} (the line starts {_excerpt(text)})")


def row_by_row(where, body, first_line, header, cols, delimiter, dropna):
    """The careful path: the csv module row by row, naming the line of the first problem.

    Returns:
      (x, y, dropped, lines): (n,) values, rows dropped, (n,) the line number of each value.
    """
    reader = csv.reader(io.StringIO(body), delimiter=delimiter, strict=True)
    xs, ys, lines, dropped = [], [], [], 0
    end = first_line - 1  # the line the previous row ended on
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            text = body.split("\n", start - first_line + 1)[start - first_line]
            raise _csv_error(where, start, exc, text) from None
        end = first_line - 1 + reader.line_num
        if not row:  # an empty line
            continue
        if len(row) != len(header):
            raise _row_length(where, start, len(row), len(header))
        values = []
        for c in cols:
            try:
                v = _number(row[c])
            except ValueError:
                if not dropna:
                    raise _not_a_number(f"{where} line {start}", header[c], row[c]) from None
                v = None
            if v is None and not dropna:
                raise InputError(f"{where} line {start}, column {header[c]!r}: missing value "
                                 f"{_excerpt(row[c])} (dropna leaves such rows out)")
            values.append(v)
        if None in values:
            dropped += 1
            continue
        xs.append(values[0])
        ys.append(values[1])
        lines.append(start)
    return np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64), dropped, np.array(lines)


class _Header(NamedTuple):
    """The header row of a CSV file, as `_header` reads it."""

    names: list  # the column names, stripped
    delimiter: str  # "," ";" or "\t"
    cols: tuple  # (i, j) the positions of the x and y columns
    lead: int  # blank lines above the header row
    body: str  # the text below the header row, with "\n" line ends


def _text(typed: str, raw: bytes | str, where: str) -> str:
    """The file's text: UTF-8 with or without a byte-order mark, universal line ends."""
    try:
        text = raw.removeprefix("\ufeff") if isinstance(raw, str) else raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not a text CSV file (not UTF-8 at byte {exc.start})"
                         ) from None
    if "\r" in text:  # CRLF (Excel) or CR line ends, as universal newlines read them
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _header(text: str, where: str, x: str, y: str) -> _Header:
    """The header row: its delimiter sniffed, no column twice, columns `x` and `y` there."""
    lead = len(text) - len(text.lstrip("\n"))  # blank lines above the header
    text = text[lead:]
    if not text.strip():
        raise InputError(f"{where} is empty; expected a header row with columns {x} and {y}")
    header_line, _, body = text.partition("\n")
    delimiter = _sniff(header_line)
    try:
        names = [h.strip() for h in next(csv.reader([header_line], delimiter=delimiter,
                                                    strict=True))]
    except csv.Error as exc:
        raise _csv_error(where, lead + 1, exc, header_line) from None
    seen = set()
    for name in names:
        if name and name in seen:
            raise InputError(f"{where}: the header names column {name!r} twice "
                             f"(header is {_shown_names(names)})")
        seen.add(name)
    missing = [c for c in (x, y) if c not in names]
    if missing:
        hidden = [n for n in names if not n.isprintable()]
        hint = (f"; {ascii(hidden[0])} holds an invisible character (a second byte-order "
                "mark, a NUL?)" if hidden else "")
        raise InputError(f"{where} lacks column(s) {', '.join(missing)} "
                         f"(header is {_shown_names(names)}){hint}")
    return _Header(names, delimiter, (names.index(x), names.index(y)), lead, body)


def _fast(source, where: str, head: _Header, columns: tuple, dropna: bool):
    """numpy's C reader on a file without quotes: (x, y, dropped, lines), or None when a field
    is empty or not a number (the careful path then names it).

    source: the file's path, or its text (from a stream)."""
    first_line = head.lead + 2  # the line number of the body's first line
    fields, blank = _fields_per_line(head.body, head.delimiter)
    bad = np.flatnonzero((fields != len(head.names)) & ~blank)
    if bad.size:
        i = int(bad[0])
        raise _row_length(where, first_line + i, int(fields[i]), len(head.names))
    lines = first_line + np.flatnonzero(~blank)  # (n,) the line of each row
    if lines.size == 0:
        return np.zeros(0), np.zeros(0), 0, lines
    try:
        # From the path: numpy reads a file in chunks, faster than from a string.
        xy = np.loadtxt(source, delimiter=head.delimiter, usecols=head.cols,
                        skiprows=head.lead + 1, encoding="utf-8-sig", dtype=np.float64,
                        comments=None, ndmin=2)  # (n, 2)
    except ValueError:  # an empty or non-numeric field: find it row by row
        return None
    xs, ys = xy[:, 0], xy[:, 1]
    nan = np.isnan(xs) | np.isnan(ys)  # "nan" fields: missing values
    if nan.any() and not dropna:
        i = int(np.flatnonzero(nan)[0])
        c = 0 if np.isnan(xs[i]) else 1
        raise InputError(f"{where} line {lines[i]}, column {columns[c]!r}: missing value "
                         "(NaN) (dropna leaves such rows out)")
    return xs[~nan], ys[~nan], int(nan.sum()), lines[~nan]


def _check_values(where: str, columns: tuple, xs, ys, lines, dropped: int) -> None:
    """Refuse an infinite value (naming its line and column) and a table with no row left."""
    for name, values in zip(columns, (xs, ys)):
        inf = np.flatnonzero(np.isinf(values))
        if inf.size:
            i = int(inf[0])
            raise InputError(f"{where} line {lines[i]}, column {name!r}: {values[i]} is not a "
                             "finite number (infinite, or too large for float64)")
    if xs.size == 0:
        left = f" after dropping {dropped} row(s) with a missing or non-numeric value" if dropped else ""
        raise InputError(f"{where} holds no rows{left}: x is empty")


def read_table(path, x: str = "x", y: str = "y", *, dropna: bool = False) -> Table:
    """Read two numeric columns from a CSV file with a header row.

    The file may start with a UTF-8 byte-order mark (Excel's "CSV UTF-8"); its delimiter, one
    of ``,`` ``;`` and tab, is sniffed from the header row; fields may be quoted; other columns
    are ignored. Numbers are read by numpy's C reader (`np.loadtxt`), 10^6 rows in well under
    a second.

    Args:
      path: the CSV file: a path, or an open file or text stream (``io.StringIO``,
        ``sys.stdin``), read to its end.
      x, y: the names of the two columns, as in the header.
      dropna: leave out the rows whose x or y is missing (empty, NA, N/A, NaN, null, None) or
        not a number, and count them, instead of refusing the file.

    Returns:
      `Table`: x and y as float64 arrays of shape (n,), the number of rows dropped, the column
      names and the delimiter.

    Raises:
      InputError: the path is empty, missing, a directory, a FIFO or unreadable; the file is
        not UTF-8 text, has no header row, a column twice in its header, or no column `x` or
        `y`; a row has more or fewer fields than the header, an unclosed quote or an over-long
        field (naming the line, with an excerpt); a value is missing or not a number (naming
        the line and the column) and `dropna` is False; a value is infinite; no row is left.

    Examples:
      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "excel.csv")
      >>> with open(path, "w", encoding="utf-8-sig") as fh:
      ...     _ = fh.write("time;distance\\n1;2.5\\n2;\\n3;7.5\\n")
      >>> t = read_table(path, x="time", y="distance", dropna=True)
      >>> t.x.tolist(), t.y.tolist(), t.dropped, t.delimiter
      ([1.0, 3.0], [2.5, 7.5], 1, ';')
    """
    typed, raw = _open_data(path)
    where = f"data: {_shown(typed)}"
    text = _text(typed, raw, where)
    head = _header(text, where, x, y)
    source = io.StringIO(text) if hasattr(path, "read") else typed  # a stream is read once
    out = None if '"' in head.body else _fast(source, where, head, (x, y), dropna)
    if out is None:  # quoted fields, or a value the fast path cannot read
        out = row_by_row(where, head.body, head.lead + 2, head.names, head.cols, head.delimiter,
                         dropna)
    xs, ys, dropped, lines = out
    _check_values(where, (x, y), xs, ys, lines, dropped)
    xs, ys = _checks.data(xs, ys)
    return Table(xs, ys, dropped, (x, y), delimiter=head.delimiter)


def read_csv(path, x: str = "x", y: str = "y", dropna: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read columns `x` and `y` from a CSV file with a header row: `read_table`'s x and y.

    Returns float64 arrays of shape (n,). `read_table` says how many rows `dropna` left out.

    Raises:
      InputError: as `read_table`.
    """
    table = read_table(path, x, y, dropna=dropna)
    return table.x, table.y


__all__ = ["DELIMITERS", "EXCERPT", "MISSING", "Table", "read_csv", "read_table", "row_by_row"]
