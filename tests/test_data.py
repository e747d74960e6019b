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


# --------------------------------------------------------------------------- a fit's length

#: (batching, keywords, the Length or the message's words): every caller's cases, decided once.
LENGTHS = [
    ("full", dict(steps=5), data.Length(5, None, None)),
    ("full", dict(defaults=True), data.Length(100, None, None)),
    ("minibatch", dict(epochs=3, batch_size=7), data.Length(None, 3, 7)),
    ("minibatch", dict(defaults=True), data.Length(None, 100, 10)),
    ("any", dict(steps=4), data.Length(4, None, None)),
    ("any", dict(epochs=2, batch_size=30), data.Length(None, 2, 30)),
    ("any", dict(defaults=True), data.Length(100, None, None)),
    ("any", dict(steps=4, epochs=2), "steps and epochs: give steps for full-batch steps or"),
    ("any", dict(), "got neither"),
    ("any", dict(batch_size=3, defaults=True), "batch_size applies to minibatches"),
    ("full", dict(epochs=3, what="--optimizer gd"), "epochs does not apply to --optimizer gd"),
    ("full", dict(steps=3, batch_size=3), "batch_size does not apply to a full-batch fit"),
    ("minibatch", dict(steps=3, epochs=1, batch_size=2), "steps does not apply to a minibatch"),
    ("full", dict(steps=0), "steps must be a positive integer"),
    ("full", dict(steps=2**31), "steps must be below 2**31"),
    ("minibatch", dict(epochs=2**31 // 10 + 1, batch_size=10), "epochs: 214748365 epochs of 10"),
    ("minibatch", dict(epochs=2, batch_size=0), "batch_size must be a positive integer"),
    ("full", dict(epochs=1, names={"epochs": "--epochs", "steps": "--steps"}),
     "--epochs does not apply to a full-batch fit, which uses the whole data every step "
     "(give --steps)"),
]


@pytest.mark.parametrize("batching, kwargs, want", LENGTHS)
def test_fit_length_decides_once(batching, kwargs, want):
    if isinstance(want, data.Length):
        got = data.fit_length(100, batching, **kwargs)
        assert got == want
        assert got.total(100) == (want.steps or want.epochs * -(-100 // want.batch_size))
    else:
        with pytest.raises(ff.InputError) as exc:
            data.fit_length(100, batching, **kwargs)
        assert want in str(exc.value)


def test_fit_length_without_n_leaves_the_epochs_steps_for_later():
    assert data.fit_length(None, "minibatch", epochs=2**31, batch_size=1).epochs == 2**31


def test_batching_for_resolves_any_by_what_is_given():
    assert data.batching_for("full", epochs=3) == "full"
    assert data.batching_for("any", steps=3, epochs=3) == "full"
    assert data.batching_for("any", epochs=np.zeros((2, 5))) == "minibatch"
    assert data.batching_for("any") == "full"
    with pytest.raises(ff.InputError, match="batching must be one of"):
        data.batching_for("sometimes")


def test_check_length_takes_an_order():
    order = ff.batch_order(10, 3, seed=0)
    steps, checked, batch = data.check_length(10, None, order, 4)
    assert steps is None and batch == 4 and np.array_equal(checked, order)
    with pytest.raises(ff.InputError, match="steps and order"):
        data.check_length(10, 5, order, 4)
