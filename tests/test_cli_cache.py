"""JAX's persistent compilation cache, on by default for the command line: same numbers, less time.

Each command line below runs in a fresh process, as a user's would, with the cache in a folder
of the test's own.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from functional_fit_cli import options


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
