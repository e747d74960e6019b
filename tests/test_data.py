"""The lecture's data recipe, CSV input and the shared batch order."""

import numpy as np
import pytest

import functional_fit as ff
from functional_fit import data


def lecture_cell_3(n=100, seed=42, noise=0.7):
    """Cell 3 of the lecture, verbatim (the independent reference)."""
    np.random.seed(seed)
    w_true = np.array([1.0, 3.0])
    quad = -4
    x = np.sort(np.random.rand(n) * 2 - 1.0)
    y = w_true[0] + w_true[1] * x + quad * (x**2) + noise * np.random.randn(n)
    x[0] = -1.5
    y[0] = 10
    return x, y


@pytest.mark.parametrize("n,seed,noise", [(100, 42, 0.7), (137, 3, 0.0), (1, 0, 2.5)])
def test_lecture_data_is_cell_3(n, seed, noise):
    x, y = ff.lecture_data(n=n, seed=seed, noise=noise)
    x_ref, y_ref = lecture_cell_3(n, seed, noise)
    assert x.dtype == np.float64 and y.dtype == np.float64
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_lecture_data_shape_and_outlier(lecture_xy):
    x, y = lecture_xy
    assert x.shape == y.shape == (100,)
    assert (x[0], y[0]) == (-1.5, 10.0)
    assert np.all(np.diff(x[1:]) >= 0) and np.all((x[1:] >= -1) & (x[1:] < 1))


def test_lecture_data_leaves_global_generator_alone():
    np.random.seed(7)
    expected = np.random.rand(3)
    np.random.seed(7)
    ff.lecture_data()
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_batch_order_is_per_epoch_permutations_and_reproducible():
    order = data.batch_order(137, 5, seed=3)
    assert order.shape == (5, 137)
    for row in order:
        np.testing.assert_array_equal(np.sort(row), np.arange(137))
    np.testing.assert_array_equal(order, data.batch_order(137, 5, seed=3))
    assert not np.array_equal(order, data.batch_order(137, 5, seed=4))
    assert not np.array_equal(order[0], order[1])


def test_read_csv_round_trip(tmp_path, lecture_xy):
    x, y = lecture_xy
    path = tmp_path / "d.csv"
    lines = ["id,y,x"] + [f"{i},{float(b)!r},{float(a)!r}" for i, (a, b) in enumerate(zip(x, y))]
    path.write_text("\n".join(lines) + "\n")
    x2, y2 = ff.read_csv(path)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)


def test_batches_match_dataloader_cut():
    """The full batches and the short last one hold exactly what DataLoader(drop_last=False) gives."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from functional_fit.fit import batches
    from parity.data import OrderSampler

    n, b, epochs = 137, 10, 2
    order = data.batch_order(n, epochs, seed=1)
    full, rest = (np.asarray(a) for a in batches(order, b))
    assert full.shape == (epochs, 13, 10) and rest.shape == (epochs, 7)
    loader = DataLoader(TensorDataset(torch.arange(n)), batch_size=b, sampler=OrderSampler(order))
    expected = [batch.numpy() for _ in range(epochs) for (batch,) in loader]
    ours = [batch for e in range(epochs) for batch in [*full[e], rest[e]]]
    assert len(expected) == len(ours) == epochs * 14
    for got, want in zip(ours, expected):
        np.testing.assert_array_equal(got, want)
    full, rest = batches(order[:, :130], 10)
    assert rest is None and full.shape == (epochs, 13, 10)
