"""README.md is current: its table, measured again here, says what this machine measures.

Differences above 1e-9 must match the committed ones to the two digits printed; those at or
below it (rounding, whose last digits may change between machines) need only stay there. Every
`functional_fit.optim` row and every optax one-liner the table offers agrees with torch to 1e-9.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("atlas", ROOT / "scripts" / "atlas.py")
atlas = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(atlas)


@pytest.fixture(scope="module")
def results():
    return atlas.measure_all()


@pytest.mark.slow
def test_committed_table_is_current(results):
    committed = atlas.parse(atlas.ATLAS_MD.read_text())
    fresh = atlas.parse(atlas.START + atlas.table(results) + atlas.END)
    assert len(committed) == len(atlas.ROWS)
    assert atlas.differences(committed, fresh) == []


@pytest.mark.slow
def test_verified_calls_and_one_liners_agree_with_torch(results):
    for r in results:
        assert r.verified <= atlas.AGREE, r.torch
        if r.one_liner:
            assert r.one_liner_diff <= atlas.AGREE, r.one_liner
        else:  # no one-liner: the name-for-name call is not torch's
            assert r.naive > atlas.AGREE, r.torch


@pytest.mark.slow
def test_figure_has_two_bars_per_row(results):
    from functional_fit import plot

    fig = plot.atlas([(r.torch, r.naive, r.verified) for r in results])
    assert len(fig.axes[0].patches) == 2 * len(results)
    assert fig.axes[0].get_xscale() == "log"


def test_staleness_is_seen_and_rounding_is_not():
    row = ("`SGD(lr=0.01)`", "`SGD(lr=0.01)`", "`optax.sgd(0.01)`", "4.6e-16", "4.6e-16")
    assert atlas.differences([row], [row[:3] + ("3.1e-16", "0")]) == []  # rounding moved
    assert atlas.differences([row], [row[:3] + ("1.2e-02", "4.6e-16")])  # a real change
    assert atlas.differences([row], [row[:2] + ("—",) + row[3:]])  # a cell's text changed
    assert atlas.differences([row], [row, row])  # a row added
