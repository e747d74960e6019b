"""Reading a class's CSV: `functional_fit.data.read_table` (`functional_fit.tables`), and ``--data --x --y --dropna``.

One table of files and what each must give: the numbers, or one line naming the line, the
column or the path. The sample files under notebooks/data/ are read as a class would read them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import functional_fit as ff
from functional_fit import InputError
from functional_fit_cli import main
from functional_fit.data import read_table

SAMPLES = Path(__file__).resolve().parents[1] / "notebooks" / "data"
X, Y = ff.lecture_data(n=5)
ROWS = "".join(f"{a!r},{b!r}\n" for a, b in zip(X.tolist(), Y.tolist()))

# id -> (file bytes, read_table kwargs, expected (x, y, dropped, delimiter) or the error's words)
CASES = {
    "plain": (b"x,y\n" + ROWS.encode(), {}, (X, Y, 0, ",")),
    "excel: BOM, ';', CRLF": ("\ufeffx;y\r\n" + ROWS.replace(",", ";").replace("\n", "\r\n"),
                              {}, (X, Y, 0, ";")),
    "tab, other columns, chosen ones": ("id\tt\td\n" + "".join(
        f"{i}\t{a!r}\t{b!r}\n" for i, (a, b) in enumerate(zip(X.tolist(), Y.tolist()))), {"x": "t", "y": "d"},
        (X, Y, 0, "\t")),
    "quoted fields": ('"x","y"\n' + "".join(f'"{a!r}","{b!r}"\n' for a, b in zip(X.tolist(), Y.tolist())), {},
                      (X, Y, 0, ",")),
    "blank lines": ("\nx,y\n\n" + ROWS.replace("\n", "\n\n"), {}, (X, Y, 0, ",")),
    "missing value": ("x,y\n1,2\n3,\n4,5\n", {}, ["line 3, column 'y': missing value ''"]),
    "missing value, dropna": ("x,y\n1,2\n3,\n4,5\n", {"dropna": True},
                              ([1.0, 4.0], [2.0, 5.0], 1, ",")),
    "NA and nan, dropna": ("x,y\n1,2\nNA,3\nnan,1\n4,5\n", {"dropna": True},
                           ([1.0, 4.0], [2.0, 5.0], 2, ",")),
    "nan": ("x,y\n1,2\n3,4\nnan,3\n", {}, ["line 4, column 'x': missing value (NaN)"]),
    "non-numeric": ("x;y\n1;2\n3;abc\n", {}, ["line 3, column 'y': 'abc' is not a number"]),
    "non-numeric, dropna": ("x;y\n1;2\n3;abc\n", {"dropna": True}, ([1.0], [2.0], 1, ";")),
    "decimal comma": ("x;y\n1,5;2\n", {}, ["line 2, column 'x'", "decimal comma"]),
    "inf": ("x,y\n1,2\n2,inf\n", {}, ["line 3, column 'y': inf is not a finite number"]),
    "all dropped": ("x,y\n1,\n", {"dropna": True}, ["no rows after dropping 1 row(s)"]),
    "duplicated column": ("x,y,x\n1,2,3\n", {}, ["column 'x' twice"]),
    "more fields than the header": ("x,y\n1,2\n3,4,5\n", {},
                                    ["line 3 has 3 fields, more than the 2 of the header"]),
    "fewer fields": ("x,y\n1,2\n3\n", {}, ["line 3 has 1 field, fewer than the 2"]),
    "unclosed quote": ('x,y\n1,2\n"3,4\n5,6\n', {}, ["line 3: a quote is not closed", "'\"3,4'"]),
    "over-long field": ("x,y\n1,2\n\"" + "9" * 200_000 + "\",1\n", {},
                        ["line 3: a field longer than", "(the line starts '\"9999"]),
    "lacks a column": ("x,z\n1,2\n", {}, ["lacks column(s) y (header is x, z)"]),
    "asks for a column it lacks": ("x,y\n1,2\n", {"y": "foodexp"}, ["lacks column(s) foodexp"]),
    "not UTF-8": (b"x,y\n\xff\xfe1,2\n", {}, ["is not a text CSV file"]),
}


@pytest.mark.parametrize("case", CASES)
def test_read_table(case, tmp_path):
    text, kwargs, want = CASES[case]
    path = tmp_path / "data.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    if isinstance(want, list):
        with pytest.raises(InputError) as exc:
            read_table(path, **kwargs)
        msg = str(exc.value)
        assert "\n" not in msg and len(msg) < 300, msg
        assert msg.startswith(f"data: {str(path)!r}"), msg
        for words in want:
            assert words in msg, msg
        return
    table = read_table(path, **kwargs)
    np.testing.assert_array_equal(table.x, want[0])
    np.testing.assert_array_equal(table.y, want[1])
    assert (table.dropped, table.delimiter) == want[2:]
    assert table.x.dtype == table.y.dtype == np.float64


def test_read_csv_keeps_its_signature(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("y,x\n2,1\n,3\n")
    x, y = ff.read_csv(path, dropna=True)
    assert x.tolist() == [1.0] and y.tolist() == [2.0]


def test_a_million_rows_take_the_fast_path(tmp_path, monkeypatch):
    """10^6 rows are read by np.loadtxt, never row by row (the speed is benchmarks/bench_csv.py)."""
    from functional_fit import tables

    n = 10**6
    path = tmp_path / "big.csv"
    values = np.arange(n, dtype=np.float64) / 8  # exact in decimal
    path.write_text("x,y\n" + "\n".join(f"{v},{-v}" for v in values.tolist()) + "\n")
    monkeypatch.setattr(tables, "row_by_row", lambda *a, **k: pytest.fail("read row by row"))
    table = read_table(path)
    np.testing.assert_array_equal(table.x, values)
    np.testing.assert_array_equal(table.y, -values)


# --------------------------------------------------------------------------- paths


def _path_error(path) -> str:
    with pytest.raises(InputError) as exc:
        read_table(path)
    return str(exc.value)


def test_paths_that_are_not_files(tmp_path):
    assert _path_error("") == "data: the path is empty (''); expected a CSV file"
    typed = f"{tmp_path}/"
    assert _path_error(typed) == f"data: {typed!r} is a directory; expected a CSV file"
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert _path_error(str(fifo)) == f"data: {str(fifo)!r} is a named pipe (FIFO); expected a CSV file"
    assert "no such file" in _path_error(tmp_path / "nope.csv")


def test_path_too_long_is_one_short_line(tmp_path):
    msg = _path_error(str(tmp_path / ("a" * 5000)))
    assert "cannot read" in msg and "File name too long" in msg and len(msg) < 300


def test_permission_denied_is_one_line(tmp_path, monkeypatch):
    """A folder without search permission: os.stat raises PermissionError (root never sees it,
    so it is simulated, and tried for real where the tests do not run as root)."""
    from functional_fit import tables

    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "d.csv").write_text("x,y\n1,2\n")
    if os.geteuid() != 0:
        locked.chmod(0o600)
        try:
            msg = _path_error(locked / "d.csv")
        finally:
            locked.chmod(0o700)
    else:
        def stat(path, *a, **k):
            raise PermissionError(13, "Permission denied", path)

        monkeypatch.setattr(tables.os, "stat", stat)
        msg = _path_error(locked / "d.csv")
    assert msg == f"data: cannot read {str(locked / 'd.csv')!r}: permission denied (on the " \
                  "file or a folder above it)"


# --------------------------------------------------------------------------- the samples


def test_sample_real_data_engel():
    """A real public-domain data set (statsmodels' engel.csv; notebooks/data/README.md)."""
    table = read_table(SAMPLES / "engel.csv", x="income", y="foodexp")
    assert table.x.shape == (235,) and table.dropped == 0
    assert 377 < table.x.min() < table.x.max() < 4958 and np.corrcoef(table.x, table.y)[0, 1] > 0.9


def test_sample_excel_file_is_the_lecture_data():
    table = read_table(SAMPLES / "excel_semicolon.csv")
    assert (SAMPLES / "excel_semicolon.csv").read_bytes().startswith(b"\xef\xbb\xbfpoint;x;y\r\n")
    assert table.delimiter == ";"
    x, y = ff.lecture_data()
    np.testing.assert_array_equal(table.x, x)
    np.testing.assert_array_equal(table.y, y)


def test_sample_missing_value():
    with pytest.raises(InputError, match="line 8, column 'y': missing value"):
        read_table(SAMPLES / "missing_value.csv")
    table = read_table(SAMPLES / "missing_value.csv", dropna=True)
    assert table.dropped == 1 and table.x.shape == (99,)


# --------------------------------------------------------------------------- the command line


def test_cli_dropna_is_reported_in_output_and_json(capsys):
    data = str(SAMPLES / "missing_value.csv")
    argv = ["sweep", "--data", data, "--dropna", "--lr", "0.1:1:2", "--steps", "5", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)["settings"]
    assert doc["data"]["dropped"] == 1 and doc["data"]["n"] == 99
    assert doc["data"]["columns"] == ["x", "y"]
    assert err.strip() == (f"functional-fit sweep: --dropna left out 1 row(s) of {data} with a "
                           "missing or non-numeric x or y")


def test_cli_columns_and_excel_file(capsys, tmp_path):
    argv = ["surface", "--data", str(SAMPLES / "engel.csv"), "--x", "income", "--y", "foodexp",
            "--grid", "8x8", "--lr", "0.001", "--steps", "5"]
    assert main(argv) == 0
    assert "csv data (n=235)" in capsys.readouterr().out
    assert main(["sweep", "--data", str(SAMPLES / "excel_semicolon.csv"), "--lr", "0.1:1:2",
                 "--steps", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["data"]["n"] == 100


@pytest.mark.parametrize("argv, says", [
    (["sweep", "--x", "t"], "--x applies to --data only"),
    (["sweep", "--dropna"], "--dropna applies to --data only"),
    (["sweep", "--data", ""], "data: the path is empty ('')"),
    (["sweep", "--data", str(SAMPLES / "missing_value.csv")], "line 8, column 'y'"),
    (["sweep", "--data", str(SAMPLES / "engel.csv")], "lacks column(s) x, y (header is income, foodexp)"),
])
def test_cli_refusals_are_one_line(argv, says, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and says in err, err
