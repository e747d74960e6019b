"""JAX's persistent compilation cache, on by default for the command line: same numbers, less time.

Each command line below runs in a fresh process, as a user's would, with the cache in a folder
of the test's own.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import types

import pytest

from functional_fit_cli import cache, options


def _lecture_json(cache: str | None, *extra) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    if cache is not None:
        env["FUNCTIONAL_FIT_CACHE_DIR"] = cache
    proc = subprocess.run([sys.executable, "-m", "functional_fit", "lecture", "--n", "30",
                           "--json", *extra], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_the_cache_fills_and_changes_no_number(tmp_path):
    cache = str(tmp_path / "jax")
    cold = _lecture_json(cache)
    kept = sorted(os.listdir(cache))
    assert len(kept) > 10  # every program, however quick to compile
    warm = _lecture_json(cache)
    assert sorted(os.listdir(cache)) == kept  # nothing compiled again
    off = _lecture_json(str(tmp_path / "unused"), "--no-cache")
    assert not (tmp_path / "unused").exists()
    assert cold == warm == off  # byte for byte


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("FUNCTIONAL_FIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert options.cache_dir() == tmp_path / "functional-fit" / "jax"
    monkeypatch.setenv("FUNCTIONAL_FIT_CACHE_DIR", str(tmp_path / "here"))
    assert options.cache_dir() == tmp_path / "here"


def test_no_cache_is_an_option_of_every_command():
    from functional_fit_cli import COMMANDS, build_parser

    parser = build_parser()
    for command in COMMANDS:
        assert parser.parse_args([command, "--no-cache"]).no_cache is True


# --------------------------------------------------------------------------- a broken cache


def _sweep(cache: str, *extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["FUNCTIONAL_FIT_CACHE_DIR"] = cache
    return subprocess.run([sys.executable, "-m", "functional_fit", "sweep", "--lr", "1e-3:1:4",
                           "--steps", "20", "--json", *extra], capture_output=True, text=True,
                          timeout=300, env=env)


def test_damaged_entries_are_one_line_once_and_then_gone(tmp_path):
    """Truncated entries (what a full disk leaves, as JAX writes in place): one line naming the
    cache, the same numbers, the entries removed; the next run is quiet and fills it again."""
    cache = tmp_path / "jax"
    good = _sweep(str(cache))
    assert good.returncode == 0 and good.stderr == "", good.stderr
    kept = sorted(p.name for p in cache.iterdir())
    for entry in cache.glob("*-cache"):
        entry.write_bytes(entry.read_bytes()[:100])
    damaged = _sweep(str(cache))
    assert damaged.returncode == 0, damaged.stderr
    lines = damaged.stderr.splitlines()
    assert len(lines) == 1 and "note:" in lines[0] and str(cache) in lines[0], damaged.stderr
    assert "could not be read" in lines[0]
    assert damaged.stdout == good.stdout
    again = _sweep(str(cache))
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert again.stdout == good.stdout
    assert sorted(p.name for p in cache.iterdir()) == kept  # compiled afresh, whole again


def test_a_cache_that_cannot_be_made_is_one_line_and_the_run_goes_on(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    proc = _sweep(str(tmp_path / "file" / "jax"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "running without it" in lines[0] and "cannot be made" in lines[0]
    assert proc.stdout == _sweep(str(tmp_path / "unused"), "--no-cache").stdout


def test_a_read_only_or_full_cache_folder_is_not_used(tmp_path, monkeypatch):
    assert cache.problem(tmp_path) is None
    assert [p.name for p in tmp_path.iterdir()] == []  # the probe is gone

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    with monkeypatch.context() as m:
        m.setattr(cache.tempfile, "mkstemp", read_only)
        assert cache.problem(tmp_path) == "cannot be written in (Read-only file system)"
    with monkeypatch.context() as m:
        m.setattr(cache.shutil, "disk_usage", lambda p: types.SimpleNamespace(free=2**20))
        assert cache.problem(tmp_path) == "is on a disk with only 1.0 MiB free"


def test_only_the_named_entries_are_removed(tmp_path):
    h1, h2 = "a" * 64, "b" * 64
    names = [f"jit_f-{h1}-cache", f"jit_f-{h1}-atime", f"jit_f-{h2}-cache", f"jit_fg-{h1}-cache",
             f"jit_g-{h1}-cache", "notes.txt"]
    for name in names:
        (tmp_path / name).write_text("x")
    assert cache.repair(tmp_path, ["jit_f"]) == 3  # every key of program jit_f
    assert cache.repair(tmp_path, [f"jit_g-{h1}"]) == 1  # one key
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"jit_fg-{h1}-cache", "notes.txt"]


# --------------------------------------------------------------------------- kept results


def test_kept_computes_once_and_reads_back(tmp_path):
    calls = []

    def make():
        calls.append(1)
        return {"paths": [1.5, 2.5], "name": "x"}

    first = cache.kept("thing", b"key", make, tmp_path)
    second = cache.kept("thing", b"key", make, tmp_path)
    assert first == second == {"paths": [1.5, 2.5], "name": "x"} and len(calls) == 1
    assert cache.kept("thing", b"other key", make, tmp_path) == first and len(calls) == 2
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.startswith("thing-") and f.endswith(".json") for f in files)


def test_kept_without_a_folder_always_computes(tmp_path):
    calls = []
    for _ in range(2):
        cache.kept("thing", b"key", lambda: calls.append(1) or {"a": 1}, None)
    assert len(calls) == 2


def test_a_damaged_kept_file_is_computed_again(tmp_path):
    cache.kept("thing", b"key", lambda: {"a": 1}, tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_text('{"a": ', encoding="utf-8")  # cut short
    assert cache.kept("thing", b"key", lambda: {"a": 2}, tmp_path) == {"a": 2}
    assert cache.kept("thing", b"key", lambda: {"a": 3}, tmp_path) == {"a": 2}  # rewritten


def test_a_folder_that_cannot_be_written_costs_only_the_keeping(tmp_path):
    folder = tmp_path / "gone"  # never made: the write fails, the result is still returned
    assert cache.kept("thing", b"key", lambda: {"a": 1}, folder) == {"a": 1}
    assert not folder.exists()
    # a result that is not strict JSON is returned, not kept, and nothing half-written is left
    inf = {"a": float("inf")}
    assert cache.kept("thing", b"key", lambda: inf, tmp_path) == inf
    assert list(tmp_path.iterdir()) == []


def test_the_source_hash_follows_the_sources(tmp_path):
    pkg = tmp_path / "pkg_for_hash"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        before = cache.source_hash(("pkg_for_hash",))
        assert cache.source_hash(("pkg_for_hash",)) == before
        (pkg / "more.py").write_text("Y = 2\n")
        assert cache.source_hash(("pkg_for_hash",)) != before
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("pkg_for_hash", None)


def test_lecture_keeps_its_explorer_and_reads_it_back(tmp_path, monkeypatch):
    """The lecture's explorer data is kept under its data and seed: the same data is read
    back, other data or another seed is computed; without a cache folder it always is."""
    import numpy as np

    from comparison import explorer
    from functional_fit_cli import lecture

    calls = []
    monkeypatch.setattr(explorer, "data", lambda x, y, order_seed: calls.append(
        (len(x), order_seed)) or {"n": len(x), "seed": order_seed})
    x, y = np.linspace(-1, 1, 7), np.arange(7.0)
    args = types.SimpleNamespace(order_seed=0, cache_folder=tmp_path)
    first, again = lecture.explorer_data(args, x, y), lecture.explorer_data(args, x, y)
    assert first == again == {"n": 7, "seed": 0}
    assert calls == [(7, 0)]
    lecture.explorer_data(types.SimpleNamespace(order_seed=1, cache_folder=tmp_path), x, y)
    lecture.explorer_data(args, x, y + 1)
    lecture.explorer_data(types.SimpleNamespace(order_seed=0, cache_folder=None), x, y)
    assert calls == [(7, 0), (7, 1), (7, 0), (7, 0)]
