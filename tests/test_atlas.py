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
        elif r.naive is not None:  # no one-liner: the name-for-name call is not torch's
            assert r.naive > atlas.AGREE, r.torch


@pytest.mark.slow
def test_figure_has_two_bars_per_row(results):
    from functional_fit import plot

    fig = plot.atlas([(r.torch, r.naive, r.verified) for r in results])
    assert len(fig.axes[0].patches) == len(results) + sum(r.naive is not None for r in results)
    assert fig.axes[0].get_xscale() == "log"


@pytest.fixture(scope="module")
def schedules():
    return [atlas.measure_schedule(row) for row in atlas.SCHEDULE_ROWS]


def test_committed_schedule_table_is_current(schedules):
    args = (atlas.SCHEDULE_START, atlas.SCHEDULE_END)
    committed = atlas.parse(atlas.ATLAS_MD.read_text(), *args)
    fresh = atlas.parse(args[0] + atlas.schedule_table(schedules) + args[1], *args)
    assert len(committed) == len(atlas.SCHEDULE_ROWS)
    assert atlas.differences(committed, fresh) == []


def test_every_torch_scheduler_is_in_the_schedule_table_and_agrees(schedules):
    import torch

    schedulers = {name for name, cls in vars(torch.optim.lr_scheduler).items()
                  if isinstance(cls, type) and name[0] != "_" and name not in (
                      "LRScheduler", "_LRScheduler", "Optimizer")
                  and (issubclass(cls, torch.optim.lr_scheduler.LRScheduler)
                       or name == "ReduceLROnPlateau")}
    assert len(schedulers) == 15  # torch 2.13's
    assert {r.torch.split("(")[0] for r in schedules} == schedulers
    for r in schedules:
        assert r.verified <= atlas.AGREE, r.torch
    # optax's schedules, read at its int32 count, compute in float32: the column shows it
    assert all(r.naive_diff > atlas.AGREE for r in schedules if r.torch.startswith("StepLR"))


def test_figure_draws_one_bar_where_optax_has_none(schedules):
    from functional_fit import plot

    fig = plot.atlas([(r.torch, r.naive_diff, r.verified) for r in schedules])
    assert len(fig.axes[0].patches) == len(schedules) + sum(
        r.naive_diff is not None for r in schedules)


def test_every_torch_optimizer_has_a_row():
    import torch

    optimizers = {name for name, cls in vars(torch.optim).items() if isinstance(cls, type)
                  and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer}
    assert len(optimizers) == 15  # torch 2.13's
    assert {row.name for row in atlas.ROWS} == optimizers


def test_staleness_is_seen_and_rounding_is_not():
    row = ("`SGD(lr=0.01)`", "`SGD(lr=0.01)`", "`optax.sgd(0.01)`", "4.6e-16", "4.6e-16")
    assert atlas.differences([row], [row[:3] + ("3.1e-16", "0")]) == []  # rounding moved
    assert atlas.differences([row], [row[:3] + ("1.2e-02", "4.6e-16")])  # a real change
    assert atlas.differences([row], [row[:2] + ("—",) + row[3:]])  # a cell's text changed
    assert atlas.differences([row], [row, row])  # a row added
