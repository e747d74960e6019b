"""The optimizer explorer's paths (`functional_fit.explorer`, `parity.explorer`) and page data
(`comparison.explorer`), against single fits in both frameworks.

- Adam's paths at three learning rates equal `parity.fit.train` with ``torch.optim.Adam``
  (the issue's check), and GD's equal the lecture's `parity.fit.gradient_descent`;
- every path of the JAX side equals the torch side's to float64 rounding, except the ones the
  known cause parts: an optimizer dividing a gradient by its own size, on a batch whose exact
  gradient is 0 (JAX's sum leaves ~1e-17, torch's 0);
- each optimizer's learning rates go from crawling to leaving the window;
- the page's packed paths read back within their resolution, and the explorer stays small.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import functional_fit as ff
import parity
from comparison import explorer as page
from functional_fit import explorer
from functional_fit.tolerances import TRAJECTORY_FLOAT64
from parity import explorer as torch_explorer

#: Optimizers that divide a gradient by its own running size.
ADAPTIVE = ("rmsprop", "adagrad", "adam")
#: How far a rounding-level gradient, divided by its own size, can move such a path relative
#: to its size: one step of lr * g / (|g| + eps) with g ~ 1e-17 and eps = 1e-10 (Adagrad).
BALANCED_BATCH = 1e-6


@pytest.fixture(scope="module")
def runs(lecture_xy):
    x, y = (np.asarray(a) for a in lecture_xy)
    return x, y, explorer.paths(x, y), torch_explorer.paths(x, y)


def _relative(a, b):
    return np.abs(a - b).max() / max(np.abs(a).max(), 1.0)


@pytest.mark.parametrize("loss", ["mse", "l1"])
@pytest.mark.parametrize("lr_index", [4, 12, 20])
def test_adam_paths_equal_torch_optim_adam_through_parity_fit_train(runs, loss, lr_index):
    x, y, jax_run, torch_paths = runs
    s = jax_run.settings
    o, k, start = list(explorer.OPTIMIZERS).index("adam"), list(explorer.LOSSES).index(loss), 1
    lr = s.lrs[o, lr_index]
    model = parity.SimpleLinearModel(w=s.starts[start].tolist(), dtype=torch.float64)
    loss_fn = {"mse": parity.losses.mse, "l1": parity.losses.l1}[loss]
    res = parity.fit.train(model, loss_fn, torch.from_numpy(x), torch.from_numpy(y),
                           optimizer=torch.optim.Adam(model.parameters(), lr=lr),
                           order=s.order, batch_size=s.batch_size)
    want = next(iter(res.path.values()))  # (T+1, 2, 1): the lecture's w is a column
    assert want.shape == (s.steps + 1, 2, 1)
    want = want[..., 0]
    assert _relative(jax_run.paths[o, k, start, lr_index], want) <= TRAJECTORY_FLOAT64
    assert _relative(torch_paths[o, k, start, lr_index], want) <= TRAJECTORY_FLOAT64


def test_gd_paths_are_the_lectures_gradient_descent(runs):
    x, y, jax_run, _ = runs
    s = jax_run.settings
    for lr_index in (0, 12):
        model = parity.SimpleLinearModel(w=s.starts[2].tolist(), dtype=torch.float64)
        want = parity.fit.gradient_descent(model, parity.losses.l1, torch.from_numpy(x),
                                           torch.from_numpy(y), lr=s.lrs[0, lr_index],
                                           nsteps=s.steps)
        assert _relative(jax_run.paths[0, 0, 2, lr_index], want) <= TRAJECTORY_FLOAT64


def test_every_path_agrees_with_torch_or_its_first_batch_is_balanced(runs):
    x, y, jax_run, torch_paths = runs
    s = jax_run.settings
    diff = page.differences(jax_run.paths, torch_paths)  # (O, 2, S, L)
    size = np.maximum(np.nan_to_num(np.abs(jax_run.paths), nan=0, posinf=0).max(axis=(-1, -2)),
                      np.abs(s.half).max())
    relative = diff / size
    assert np.isfinite(diff).all()  # both stop being finite at the same steps, if at all
    parted = {(name, loss, int(st)) for (o, k, st, _) in np.argwhere(relative > TRAJECTORY_FLOAT64)
              for name, loss in [(list(explorer.OPTIMIZERS)[o], list(explorer.LOSSES)[k])]}
    assert parted, "the lecture's data has a balanced first batch: some path should part"
    for name, loss, start in parted:
        assert name in ADAPTIVE and loss == "l1" and tuple(s.starts[start]) == (0.0, 0.0)
        first = s.order[0, : s.batch_size]
        # at w = 0 the L1 intercept gradient is -mean(sign(y)): exactly 0 on this batch
        assert np.sign(y[first]).sum() == 0
    assert relative.max() <= BALANCED_BATCH


def test_learning_rates_go_from_crawling_to_leaving_the_window(runs):
    _, _, jax_run, _ = runs
    s = jax_run.settings
    units = (jax_run.paths - s.centre) / s.half  # window units: inside is [-1, 1]
    for o, name in enumerate(explorer.OPTIMIZERS):
        for k, loss in enumerate(explorer.LOSSES):
            lowest, highest = units[o, k, :, 0], units[o, k, :, -1]  # (S, T+1, 2)
            moved = np.abs(lowest - lowest[:, :1]).max()
            assert moved < 0.05, (name, loss, moved)  # crawls: 5% of the window in all its steps
            outside = ~np.isfinite(highest) | (np.abs(np.nan_to_num(highest)) > 1)
            assert outside.any(axis=(-1, -2)).all(), (name, loss)  # every start leaves


def test_the_surfaces_are_the_losses_at_the_grid_points(lecture_xy):
    x, y = (np.asarray(a) for a in lecture_xy)
    a, b, z = explorer.surfaces(x, y, np.array([0.5, 2.0]), np.array([1.0, 3.0]), points=7)
    assert z.shape == (2, 7, 7)
    for j, i in [(0, 0), (3, 5), (6, 2)]:
        r = a[i] + b[j] * x - y
        np.testing.assert_allclose(z[:, j, i], [np.abs(r).mean(), (r**2).mean()], rtol=1e-13)


def test_pack_reads_back_within_its_resolution():
    rng = np.random.default_rng(0)
    centre, half = np.array([1.0, -2.0]), np.array([3.0, 5.0])
    paths = centre + half * rng.uniform(-3, 3, size=(4, 11, 2))
    paths[1, 5:] = np.inf
    paths[2, 7:, 1] = np.nan
    paths[3, 3] = centre + half * 1e6  # far out: kept at four half-widths
    back = page.unpack(page.pack(paths, centre, half), paths.shape, centre, half)
    ok = np.isfinite(paths) & (np.abs(paths - centre) < 3.9 * half)
    assert np.abs(back - paths)[ok].max() <= (half / page.RESOLUTION).max()
    assert np.isnan(back[1, 5:]).all() and np.isnan(back[2, 7:, 1]).all()
    assert np.isfinite(back[2, 7:, 0]).all()
    np.testing.assert_allclose(np.abs(back[3, 3] - centre), 32767 / page.RESOLUTION * half)


def test_the_page_data_is_small_and_reads_back(runs):
    x, y, jax_run, torch_paths = runs
    doc = page.data(x, y)
    s = jax_run.settings
    shape = jax_run.paths.shape
    for side, want in (("jax", jax_run.paths), ("torch", torch_paths)):
        back = page.unpack(doc[side], shape, s.centre, s.half)
        near = np.isfinite(want) & (np.abs(want - s.centre) < 3.9 * s.half)
        assert np.abs(back - want)[near].max() <= (s.half / page.RESOLUTION).max()
    section = page.section(doc)
    assert len(section.encode()) < 2_000_000  # the "under about 2 MB"
    assert doc["agreement"]["paths"] == np.prod(shape[:4])
    assert 'id="explorer-data"' in section and "</script" not in section.split(
        'id="explorer-data">')[1].split("</script>")[0]


def test_explorer_needs_enough_points(lecture_xy):
    with pytest.raises(ff.InputError, match="x"):
        explorer.paths(np.zeros(0), np.zeros(0))
