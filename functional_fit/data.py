"""Data: the lecture's synthetic set, CSV input, and the batch order shared by both frameworks.

Everything here is numpy: the data and the batch order are made once, outside either
framework, so that JAX and torch consume exactly the same numbers in the same order.
"""

from __future__ import annotations

import csv
import io
import math
import os
import stat
from typing import NamedTuple

import numpy as np

from functional_fit import checks as _checks
from functional_fit.checks import InputError

#: The lecture's truth: y = 1 + 3x - 4x^2 + noise (cell 3).
W_TRUE = (1.0, 3.0, -4.0)


def lecture_data(n: int = 100, seed: int = 42, noise: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """The lecture's synthetic data set, exactly as cell 3 makes it.

    Legacy ``np.random.seed(seed)``; x sorted uniform in [-1, 1); y = 1 + 3x - 4x^2 plus
    Gaussian noise of scale `noise`; then the outlier x[0] = -1.5, y[0] = 10.

    Args:
      n: number of points, > 0.
      seed: seed of numpy's legacy global generator (restored afterwards).
      noise: standard deviation of the noise, finite and >= 0, small enough that y is
        finite (InputError naming noise otherwise).

    Returns:
      (x, y), float64 arrays of shape (n,).

    Examples:
      >>> x, y = lecture_data()
      >>> x.shape, float(x[0]), float(y[0])
      ((100,), -1.5, 10.0)
    """
    n = _checks.positive_int("n", n)
    seed = _checks.nonnegative_int("seed", seed)
    noise = _checks.nonnegative_float("noise", noise)
    if seed >= 2**32:
        raise InputError(f"seed must be below 2**32 for numpy's legacy generator, got {seed}")
    saved = np.random.get_state()  # the recipe uses the global generator; leave it as found
    try:
        np.random.seed(seed)
        x = np.sort(np.random.rand(n) * 2 - 1.0)
        with np.errstate(over="ignore"):  # an overflow is refused below, naming noise
            y = W_TRUE[0] + W_TRUE[1] * x + W_TRUE[2] * (x**2) + noise * np.random.randn(n)
    finally:
        np.random.set_state(saved)
    if not np.all(np.isfinite(y)):
        raise InputError(f"noise={noise:g} overflows a float64: the data's y values become "
                         f"infinite; noise must be well below {np.finfo(np.float64).max / 10:.3g}")
    x[0] = -1.5
    y[0] = 10
    return x, y


def read_csv(path, x: str = "x", y: str = "y", dropna: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read columns `x` and `y` from a CSV file with a header row: `read_table`'s x and y.

    Returns float64 arrays of shape (n,). `read_table` says how many rows `dropna` left out.

    Raises:
      InputError: as `read_table`.
    """
    table = read_table(path, x, y, dropna=dropna)
    return table.x, table.y


def batch_order(n: int, epochs: int, seed: int = 0) -> np.ndarray:
    """A shuffled order of the n points for every epoch, made once from `seed`.

    Both frameworks consume this order: `functional_fit.fit` slices it into batches, and
    `parity.data.OrderSampler` hands it to a torch ``DataLoader``, so their trajectories can
    be compared step by step.

    Returns:
      int64 array of shape (epochs, n); each row a permutation of range(n).
    """
    n = _checks.positive_int("n", n)
    epochs = _checks.positive_int("epochs", epochs)
    seed = _checks.nonnegative_int("seed", seed)
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(epochs)]).astype(np.int64)  # (E, n)


def n_batches(n: int, batch_size: int) -> int:
    """Batches per epoch with ``drop_last=False``: the last one is short when B does not divide n."""
    return math.ceil(n / batch_size)


def check_order(order, n: int) -> np.ndarray:
    """Check a batch order against n data points: shape (epochs, n), each row a permutation."""
    order = np.asarray(order)
    if order.ndim != 2 or order.shape[1] != n or order.shape[0] == 0:
        raise InputError(f"order must have shape (epochs, {n}), got {order.shape}")
    if not np.issubdtype(order.dtype, np.integer):
        raise InputError(f"order must hold integer indices, got dtype {order.dtype}")
    if not np.array_equal(np.sort(order, axis=1), np.broadcast_to(np.arange(n), order.shape)):
        raise InputError(f"order: every row must be a permutation of range({n})")
    return order


def check_length(n: int, steps, order, batch_size):
    """A fit's length, checked: `steps` full-batch steps, or minibatches over `order`.

    Exactly one of `steps` and `order` (with `batch_size`) must be given; `fit.train` and
    `parity.fit.train` both take them this way.

    Returns:
      (steps, None, None), or (None, order (E, n) checked, batch_size).
    """
    if (steps is None) == (order is None):
        raise InputError("steps and order: give steps=T for T full-batch steps, or order (from "
                         "functional_fit.data.batch_order) with batch_size for minibatches; "
                         f"got {'both' if steps is not None else 'neither'}")
    if steps is not None:
        if batch_size is not None:
            raise InputError("batch_size: full-batch steps use the whole data; give batch_size "
                             "only with order")
        return _checks.positive_int("steps", steps), None, None
    return None, check_order(order, n), _checks.positive_int("batch_size", batch_size)


# --------------------------------------------------------------------------- CSV input
#
# A class brings its own CSV: saved by Excel (a UTF-8 byte-order mark, ";" between fields,
# CRLF line ends), with other columns beside the two it wants, and now and then an empty cell.
# `read_table` reads such a file through numpy's C reader (`np.loadtxt`): 10^6 rows in well
# under a second, with no Python loop over the rows. Only a file that the fast path refuses (a
# missing or non-numeric value, a quoted field, a broken row) is read again row by row, with
# the `csv` module, to name the line and the column of the first problem, or, with
# ``dropna=True``, to leave such rows out.

#: Field values read as a missing value (compared after stripping spaces, ignoring case).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
#: The delimiters sniffed from the header row, in order of preference on a tie.
DELIMITERS = (",", ";", "\t")
#: How much of a bad line or value an error message quotes.
EXCERPT = 40


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


def _open_data(path) -> tuple[str, bytes]:
    """(the path as typed, the file's bytes), or InputError saying what the path is instead."""
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
    """float(value), or None for a missing value; ValueError for anything else."""
    if value.strip().lower() in MISSING:
        return None
    return float(value)


def _not_a_number(where: str, column: str, value: str) -> InputError:
    hint = ""
    if "," in value:
        try:
            float(value.replace(",", "."))
            hint = "; a decimal comma? write a decimal point"
        except ValueError:
            pass
    return InputError(f"{where}, column {column!r}: {_excerpt(value)} is not a number{hint} "
                      "(dropna leaves such rows out)")


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


def _row_by_row(where, body, first_line, header, cols, delimiter, dropna):
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


def read_table(path, x: str = "x", y: str = "y", *, dropna: bool = False) -> Table:
    """Read two numeric columns from a CSV file with a header row.

    The file may start with a UTF-8 byte-order mark (Excel's "CSV UTF-8"); its delimiter, one
    of ``,`` ``;`` and tab, is sniffed from the header row; fields may be quoted; other columns
    are ignored. Numbers are read by numpy's C reader (`np.loadtxt`), 10^6 rows in well under
    a second.

    Args:
      path: the CSV file.
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
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not a text CSV file (not UTF-8 at byte {exc.start})"
                         ) from None
    if "\r" in text:  # CRLF (Excel) or CR line ends, as universal newlines read them
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lead = len(text) - len(text.lstrip("\n"))  # blank lines above the header
    text = text[lead:]
    if not text.strip():
        raise InputError(f"{where} is empty; expected a header row with columns {x} and {y}")
    header_line, _, body = text.partition("\n")
    delimiter = _sniff(header_line)
    try:
        header = [h.strip() for h in next(csv.reader([header_line], delimiter=delimiter,
                                                     strict=True))]
    except csv.Error as exc:
        raise _csv_error(where, lead + 1, exc, header_line) from None
    seen = set()
    for name in header:
        if name and name in seen:
            raise InputError(f"{where}: the header names column {name!r} twice "
                             f"(header is {', '.join(header)})")
        seen.add(name)
    missing = [c for c in (x, y) if c not in header]
    if missing:
        raise InputError(f"{where} lacks column(s) {', '.join(missing)} "
                         f"(header is {', '.join(header)})")
    cols = (header.index(x), header.index(y))
    first_line = lead + 2  # the line number of the body's first line

    xs = ys = None
    if '"' not in body:  # the fast path: no quoting, so lines are rows
        fields, blank = _fields_per_line(body, delimiter)
        bad = np.flatnonzero((fields != len(header)) & ~blank)
        if bad.size:
            i = int(bad[0])
            raise _row_length(where, first_line + i, int(fields[i]), len(header))
        lines = first_line + np.flatnonzero(~blank)  # (n,) the line of each row
        if lines.size == 0:
            xs, ys = np.zeros(0), np.zeros(0)
        else:
            try:
                # From the path: numpy reads a file in chunks, faster than from a string.
                xy = np.loadtxt(typed, delimiter=delimiter, usecols=cols, skiprows=lead + 1,
                                encoding="utf-8-sig", dtype=np.float64, comments=None,
                                ndmin=2)  # (n, 2)
                xs, ys = xy[:, 0], xy[:, 1]
            except ValueError:  # an empty or non-numeric field: find it row by row
                xs = None
        dropped = 0
        if xs is not None:
            nan = np.isnan(xs) | np.isnan(ys)  # "nan" fields: missing values
            if nan.any() and not dropna:
                i = int(np.flatnonzero(nan)[0])
                c = 0 if np.isnan(xs[i]) else 1
                raise InputError(f"{where} line {lines[i]}, column {(x, y)[c]!r}: missing value "
                                 "(NaN) (dropna leaves such rows out)")
            xs, ys, lines, dropped = xs[~nan], ys[~nan], lines[~nan], int(nan.sum())
    if xs is None:
        xs, ys, dropped, lines = _row_by_row(where, body, first_line, header, cols, delimiter,
                                             dropna)
    for name, values in ((x, xs), (y, ys)):
        inf = np.flatnonzero(np.isinf(values))
        if inf.size:
            i = int(inf[0])
            raise InputError(f"{where} line {lines[i]}, column {name!r}: {values[i]} is not a "
                             "finite number (infinite, or too large for float64)")
    if xs.size == 0:
        left = f" after dropping {dropped} row(s) with a missing or non-numeric value" if dropped else ""
        raise InputError(f"{where} holds no rows{left}: x is empty")
    xs, ys = _checks.data(xs, ys)
    return Table(xs, ys, dropped, (x, y), delimiter)
