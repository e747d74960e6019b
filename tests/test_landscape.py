"""Surfaces and lines of real networks over data read in batches (`functional_fit.streams`).

References: the loss computed point by point on the whole data in memory (brute force), torch
itself for the ResNet, and the one-process surface for two processes that each read half.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import InputError, losses, models, surface
from functional_fit.streams import Stream
from functional_fit.tolerances import rel_err

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def net():
    module = parity.models.MLP((2, 6, 5, 1), "tanh", dtype=torch.float64, seed=2)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (43, 2))  # (n, 2): 43 points, batches of 10 leave a short one
    y = np.sin(x[:, :1] * 3) + x[:, 1:]  # (n, 1)
    return parity.params.from_module(module), x, y


def _at(plane, a, b):
    return jax.tree.map(lambda o, u, v: o + a * u + b * v, *plane)


def test_a_stream_gives_the_surface_of_the_whole_data(net):
    p, x, y = net
    plane = surface.random_plane(p, seed=1)
    a, b = np.linspace(-1, 1, 9), np.linspace(-0.5, 0.5, 7)
    whole = surface.loss_surface(models.mlp, losses.mse, x, y, a, b, plane=plane)
    for stream in (Stream(x, y, batch_size=10),  # 4 batches of 10 and one of 3
                   Stream(lambda: iter([(x[:30], y[:30]), (x[30:], y[30:])])),
                   Stream.from_loader(torch.utils.data.DataLoader(
                       torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)),
                       batch_size=16))):
        z = surface.loss_surface(models.mlp, losses.mse, stream, None, a, b, plane=plane)
        assert z.shape == (7, 9) and z.dtype == whole.dtype
        assert np.max(rel_err(z, whole)) < 1e-14
    for j, i in ((0, 0), (6, 8)):  # and the whole data's loss is the brute-force loss
        assert rel_err(whole[j, i], losses.mse(models.mlp(_at(plane, a[i], b[j]), x), y)) < 1e-13


def test_the_short_last_batch_is_weighted_by_its_size():
    """A mean of batch means would weigh the lone point of the last batch like 10 points."""
    x, y = ff.lecture_data()
    a, b = np.linspace(-1, 1, 5), np.linspace(0, 4, 3)
    z = surface.loss_surface(models.linear, losses.l1, Stream(x, y, batch_size=33), None, a, b)
    want = np.array([[np.mean(np.abs(ai + bi * x - y)) for ai in a] for bi in b])  # (3, 5)
    np.testing.assert_allclose(z, want, rtol=1e-13)
    assert not np.allclose(want, np.mean([[[np.mean(np.abs(ai + bi * x[s] - y[s]))
                                            for ai in a] for bi in b]
                                          for s in (slice(0, 33), slice(33, 66),
                                                    slice(66, 99), slice(99, 100))], axis=0))


def test_each_batch_is_read_once_per_surface(net):
    p, x, y = net
    reads = []

    def batches():
        for s in range(0, 43, 10):
            reads.append(s)
            yield x[s : s + 10], y[s : s + 10]

    plane = surface.random_plane(p, seed=1)
    surface.loss_surface(models.mlp, losses.mse, Stream(batches), None, np.linspace(-1, 1, 30),
                         np.linspace(-1, 1, 20), plane=plane, block=7)  # 600 points, 86 blocks
    assert reads == [0, 10, 20, 30, 40]


# --------------------------------------------------------------------------- a ResNet with state

WIDTH, CLASSES = 4, 3


@functools.lru_cache(maxsize=None)
def _resnet(training):
    def model(params, state, x, key=None):
        return models.resnet(params, state, x, key=key, dropout=0.0, training=training)

    return model


@pytest.fixture(scope="module")
def resnet():
    module = parity.models.ResNet(3, WIDTH, CLASSES, dropout=0.0, dtype=torch.float64, seed=0)
    module.train()
    with torch.no_grad():  # a few training-mode forwards: running statistics away from 0 and 1
        for s in range(3):
            module(torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(s)))
    names = {k for k, _ in module.named_parameters()}
    sd = parity.params.from_module(module)
    params = {k: v for k, v in sd.items() if k in names}
    state = {k: v for k, v in sd.items() if k not in names}
    rng = np.random.default_rng(1)
    x = rng.normal(size=(14, 3, 8, 8))  # (n, C, H, W)
    y = rng.integers(0, CLASSES, 14)
    return module, params, state, x, y


def test_a_resnet_in_eval_mode_uses_the_running_statistics_as_torch_does(resnet):
    module, params, state, x, y = resnet
    plane = surface.random_plane(params, seed=3)
    a, b = np.linspace(-0.5, 0.5, 3), np.linspace(-0.5, 0.5, 2)
    z = surface.loss_surface(_resnet(False), losses.cross_entropy, Stream(x, y, batch_size=4),
                             None, a, b, plane=plane, state=state)
    module.eval()
    for j in range(2):
        for i in range(3):
            moved = _at(plane, a[i], b[j])
            module.load_state_dict({**{k: torch.tensor(np.asarray(v)) for k, v in moved.items()},
                                    **{k: torch.tensor(v) for k, v in state.items()}})
            with torch.no_grad():
                want = torch.nn.functional.cross_entropy(module(torch.tensor(x)), torch.tensor(y))
            assert rel_err(z[j, i], want.item()) < 1e-12


def test_training_mode_recomputes_the_statistics_of_each_batch_at_each_point(resnet):
    _, params, state, x, y = resnet
    plane = surface.random_plane(params, seed=3)
    a, b = np.array([0.0, 0.3]), np.array([-0.2])
    z = surface.loss_surface(_resnet(True), losses.cross_entropy, Stream(x, y, batch_size=5),
                             None, a, b, plane=plane, state=state)
    for i in range(2):  # brute force: batches of 5, 5 and 4, each on its own statistics
        w = _at(plane, a[i], b[0])
        parts = [(losses.cross_entropy(_resnet(True)(w, state, x[s:s + 5])[0], y[s:s + 5]),
                  len(x[s:s + 5])) for s in (0, 5, 10)]
        want = sum(float(v) * k for v, k in parts) / 14
        assert rel_err(z[0, i], want) < 1e-12
    eval_z = surface.loss_surface(_resnet(False), losses.cross_entropy, x, y, a, b, plane=plane,
                                  state=state)
    assert not np.allclose(z, eval_z)  # the two modes are different surfaces


# --------------------------------------------------------------------------- 1-D


def test_interpolate_and_line_against_the_loss_at_each_alpha(net):
    p, x, y = net
    end = jax.tree.map(lambda w: 0.5 * w + 0.1, p)
    alphas = np.linspace(-0.5, 1.5, 9)
    r = surface.interpolate(models.mlp, losses.mse, Stream(x, y, batch_size=8), None, p, end,
                            alphas)
    for al, got in zip(alphas, r.losses):
        w = jax.tree.map(lambda s, e: (1 - al) * s + al * e, p, end)
        assert rel_err(got, losses.mse(models.mlp(w, x), y)) < 1e-13
    l0, l1 = (float(losses.mse(models.mlp(w, x), y)) for w in (p, end))
    inside = (alphas >= 0) & (alphas <= 1)
    rise = r.losses[inside] - ((1 - alphas[inside]) * l0 + alphas[inside] * l1)
    assert r.barrier == pytest.approx(max(0.0, rise.max()), rel=1e-12)
    assert r.ends[0][1] == pytest.approx(l0, rel=1e-13) and r.ends[1][1] == pytest.approx(l1, rel=1e-13)
    d = jax.tree.map(lambda s, e: e - s, p, end)
    same = surface.line(models.mlp, losses.mse, x, y, p, d, alphas, ends=(0, 1))
    np.testing.assert_allclose(same.losses, r.losses, rtol=1e-13)


def test_the_barrier_of_a_bump_and_of_a_convex_segment():
    a = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    bump = np.array([1.0, 2.5, 4.0, 2.0, 3.0])  # the line from 1 to 3 is 2 at 0.5: 4 - 2
    assert surface.lines.barrier(a, bump, ((0.0, 1.0), (1.0, 3.0))) == 2.0
    x, y = ff.lecture_data()  # MSE of a linear model: convex along any segment
    r = surface.interpolate(models.linear, losses.mse, x, y, np.zeros(2), np.array([1.0, 3.0]),
                            np.linspace(0, 1, 11))
    assert r.barrier == 0.0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, match", [
    (lambda s, p: surface.loss_surface(models.mlp, losses.mse, s, np.zeros(3), [0, 1], [0, 1],
                                       plane=surface.random_plane(p)), "y must be None"),
    (lambda s, p: surface.loss_surface(models.mlp, losses.mse, s, None, [0, 1], [0, 1],
                                       plane=surface.random_plane(p), keep_on_device=True),
     "keep_on_device"),
    (lambda s, p: surface.loss_surface(models.mlp, losses.mse, s, None, [0, 1], [0, 1],
                                       state={"s": np.zeros(2)}), "state: .* needs a plane"),
    (lambda s, p: surface.line(models.mlp, losses.mse, s, None, p, {"x": 1.0}, [0, 1]),
     "direction must have the structure"),
    (lambda s, p: surface.interpolate(models.mlp, losses.mse, s, None, p, p, [0, np.nan]),
     "alphas contains a non-finite"),
    (lambda s, p: Stream(np.zeros((3, 2)), np.zeros(4)), "same number of points"),
    (lambda s, p: Stream(np.zeros((3, 2))), "y is missing"),
    (lambda s, p: Stream(lambda: iter(()), np.zeros(3)), "Stream of a function takes neither"),
    (lambda s, p: Stream(np.zeros((3, 2)), np.zeros(3), batch_size=0), "batch_size"),
    (lambda s, p: list(Stream(lambda: iter([(np.zeros((2, 2)), np.zeros(2)),
                                            (np.zeros((2, 3)), np.zeros(2))])).batches()),
     "batch 1 has x"),
    (lambda s, p: list(Stream(lambda: iter([np.zeros(2)])).batches()), "pair"),
    (lambda s, p: list(Stream(lambda: iter(())).batches()), "no batch"),
    (lambda s, p: Stream(np.zeros((3, 2)), np.zeros(3)).shard(2, 2), "index must be below"),
])
def test_bad_input_is_one_line_naming_the_argument(net, call, match):
    p, x, y = net
    with pytest.raises(InputError, match=match):
        call(Stream(x, y, batch_size=10), p)


# --------------------------------------------------------------------------- past one machine

HOSTS = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2,
                               process_id=int(sys.argv[2]))
    import numpy as np
    from functional_fit import losses, models, surface
    from functional_fit.streams import Stream

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (43, 2)); y = np.sin(x[:, :1] * 3) + x[:, 1:]
    p = {"0.weight": rng.normal(size=(6, 2)), "0.bias": rng.normal(size=6),
         "2.weight": rng.normal(size=(1, 6)), "2.bias": rng.normal(size=1)}
    plane = surface.random_plane(p, seed=1)
    a, b = np.linspace(-1, 1, 9), np.linspace(-0.5, 0.5, 7)
    mine = Stream(x, y, batch_size=10).shard(jax.process_index(), jax.process_count())
    z = surface.loss_surface(models.mlp, losses.mse, mine, None, a, b, plane=plane)
    one = surface.loss_surface(models.mlp, losses.mse, x, y, a, b, plane=plane,
                               devices=jax.local_devices())
    print(json.dumps({"points": int(mine.n), "err": float(np.max(np.abs(z - one) / one))}))
    """
)


def test_two_processes_each_read_their_shard_and_get_the_whole_surface():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        address = f"localhost:{s.getsockname()[1]}"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, "-c", HOSTS, address, str(i)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["points"] for r in results) == [20, 23]  # batches 0-1 and 2-4 of 10
    assert all(r["err"] < 1e-14 for r in results)


# --------------------------------------------------------------------------- larger than memory

BIG = textwrap.dedent(
    """
    import json, resource, sys
    limit = int(sys.argv[2]) * 2**20  # private memory: a copy of the data would not fit
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from functional_fit import nn, surface
    from functional_fit.streams import Stream

    def model(p, x):  # a CNN: (B, 1, 8, 8) -> (B, 1)
        h = nn.relu(nn.conv2d(x, p["conv.weight"], p["conv.bias"], padding=1))
        return nn.linear(h.mean(axis=(2, 3)), p["fc.weight"], p["fc.bias"])

    def mse(y_hat, y):
        return ((y_hat - y) ** 2).mean()

    rng = np.random.default_rng(0)
    sub_x = rng.normal(size=(64, 1, 8, 8)).astype(np.float32)
    sub_y = rng.normal(size=(64, 1)).astype(np.float32)
    p = {"conv.weight": rng.normal(size=(2, 1, 3, 3)).astype(np.float32),
         "conv.bias": np.zeros(2, np.float32),
         "fc.weight": rng.normal(size=(1, 2)).astype(np.float32),
         "fc.bias": np.zeros(1, np.float32)}
    plane = surface.random_plane(p, seed=0)
    a, b = np.linspace(-1, 1, 2), np.linspace(-1, 1, 2)
    if sys.argv[3] == "subset":  # in memory, the 64 images the big file repeats
        z = surface.loss_surface(model, mse, sub_x, sub_y, a, b, plane=plane)
    else:
        xs = np.load(sys.argv[1] + "/x.npy", mmap_mode="r")
        ys = np.load(sys.argv[1] + "/y.npy", mmap_mode="r")
        z = surface.loss_surface(model, mse, Stream(xs, ys, batch_size=65536), None, a, b,
                                 plane=plane)
    # the peak resident size of this process's own memory (getrusage's ru_maxrss would also
    # count the parent's, which a fork and exec carry over)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    print(json.dumps({"z": z.tolist(), "rss": int(status["VmHWM"].split()[0]) / 1024}))
    """
)


def _big_run(folder, limit_mb, what):
    proc = subprocess.run([sys.executable, "-c", BIG, str(folder), str(limit_mb), what],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_cnn_surface_over_a_memmap_larger_than_the_memory_limit(tmp_path):
    """2.1 GB of images in a memmap, under a 1 GB limit on the process's private memory (JAX
    and XLA alone take about 0.25 GB, and their thread arenas vary from run to run): the file
    is 64 images repeated, so its surface is the 64 images' surface in memory."""
    reps = 2**17  # 64 * 2**17 images of 1 x 8 x 8 float32: 2.1 GB
    rng = np.random.default_rng(0)
    sub_x = rng.normal(size=(64, 1, 8, 8)).astype(np.float32)
    sub_y = rng.normal(size=(64, 1)).astype(np.float32)
    xs = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32,
                                   shape=(64 * reps, 1, 8, 8))
    ys = np.lib.format.open_memmap(tmp_path / "y.npy", mode="w+", dtype=np.float32,
                                   shape=(64 * reps, 1))
    for i in range(0, reps, 4096):
        xs[64 * i : 64 * (i + 4096)] = np.tile(sub_x, (4096, 1, 1, 1))
        ys[64 * i : 64 * (i + 4096)] = np.tile(sub_y, (4096, 1))
        xs.flush()
        ys.flush()
        xs._mmap.madvise(__import__("mmap").MADV_DONTNEED)  # keep this process's RSS small too
    size = xs.nbytes
    del xs, ys
    limit = 1024
    assert size >= 2 * limit * 2**20  # the file is at least twice the limit
    big, small = _big_run(tmp_path, limit, "memmap"), _big_run(tmp_path, limit, "subset")
    np.testing.assert_allclose(big["z"], small["z"], rtol=1e-5)
    assert big["rss"] < limit  # the file's pages were not held either


# --------------------------------------------------------------------------- flax and equinox


def test_a_flax_nnx_cnn_with_batchnorm_in_eval_mode_against_the_module_itself():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            kw = dict(param_dtype=jnp.float64, dtype=jnp.float64)
            self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs, **kw)
            self.bn = nnx.BatchNorm(4, rngs=rngs, **kw)
            self.fc = nnx.Linear(4, 2, rngs=rngs, **kw)

        def __call__(self, x):  # (N, H, W, C) -> (N, 2)
            return self.fc(jnp.mean(nnx.relu(self.bn(self.conv(x))), axis=(1, 2)))

    net = Net(nnx.Rngs(0))
    net.bn.mean.set_value(jnp.linspace(-0.2, 0.3, 4))  # running statistics away from 0, 1
    net.bn.var.set_value(jnp.linspace(0.5, 2.0, 4))  # (float64: nnx makes them float32)
    model, params, state = ff.modules.as_model(net, training=False)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 6, 6, 3)), rng.integers(0, 2, 10)
    plane = surface.random_plane(params, seed=4)  # flax kernels: filters on the last axis
    a, b = np.array([-0.5, 0.5]), np.array([0.25])
    args = (losses.cross_entropy, Stream(x, y, batch_size=4), None, a, b)
    with jax.numpy_dtype_promotion("standard"):
        z = (surface.loss_surface(model, *args, plane=plane) if state is None else
             surface.loss_surface(model, *args, plane=plane, state=state))
        for i in range(2):  # the module itself, its parameters moved, in eval mode
            moved = nnx.clone(net)
            nnx.update(moved, nnx.State(jax.tree.map(jnp.asarray, _at(plane, a[i], b[0]))))
            moved.eval()
            assert rel_err(z[0, i], losses.cross_entropy(moved(jnp.asarray(x)), y)) < 1e-12


def test_an_equinox_mlp_against_the_module_itself():
    import equinox as eqx

    net = eqx.nn.MLP(3, 2, 5, 2, key=jax.random.key(0), dtype=jnp.float64)
    model, params, _ = ff.modules.as_model(net)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    plane = surface.random_plane(params, seed=1)
    a, b = np.linspace(-1, 1, 3), np.array([0.0, 0.5])
    z = surface.loss_surface(model, losses.mse, Stream(x, y, batch_size=5), None, a, b,
                             plane=plane)
    static = eqx.partition(net, eqx.is_inexact_array)[1]
    for j, i in ((0, 0), (1, 2)):
        moved = eqx.combine(_at(plane, a[i], b[j]), static)
        assert rel_err(z[j, i], losses.mse(jax.vmap(moved)(x), y)) < 1e-12


def test_a_torch_modules_to_jax_twin_in_eval_mode_gives_the_hand_written_twins_surface(resnet):
    module, params, state, x, y = resnet
    module.eval()
    module.load_state_dict({k: torch.tensor(v) for k, v in {**params, **state}.items()})
    fn, sd = parity.export.to_jax(module, torch.tensor(x[:2]))
    model, trainable, buffers = parity.export.as_model(fn, sd)
    assert buffers is None  # eval mode: the buffers are constants of the model
    plane = surface.random_plane(trainable, seed=3)
    a, b = np.linspace(-0.5, 0.5, 3), np.array([0.1])
    z = surface.loss_surface(model, losses.cross_entropy, Stream(x, y, batch_size=6), None, a, b,
                             plane=plane)
    want = surface.loss_surface(_resnet(False), losses.cross_entropy, x, y, a, b, plane=plane,
                                state=state)
    assert np.max(rel_err(z, want)) < 1e-12


def test_a_convolutional_network_takes_one_point_per_call_with_the_same_numbers(resnet):
    """A loss with a convolution is computed one grid point per compiled call (no loop, no
    grouped convolution, no dot options): the numbers are those of the points in blocks."""
    from functional_fit.surface import grid as _grid

    _, params, state, x, y = resnet
    plane = surface.random_plane(params, seed=3)
    a, b = np.linspace(-0.5, 0.5, 3), np.array([-0.1, 0.2])
    sizes = []
    run = _grid.run

    def spy(kernel, args, grid, **kw):
        sizes.append((grid.block, grid.runtime.chunk_points, kw.get("options", ())))
        return run(kernel, args, grid, **kw)

    z = surface.loss_surface(_resnet(False), losses.cross_entropy, x, y, a, b, plane=plane,
                             state=state)
    blocks = surface.loss_surface(_resnet(False), losses.cross_entropy, x, y, a, b,
                                  plane=plane, state=state, block=6)  # the caller's block: kept
    np.testing.assert_allclose(z, blocks, rtol=1e-13)
    mlp_p = {"0.weight": np.ones((3, 2)), "0.bias": np.zeros(3), "2.weight": np.ones((1, 3)),
             "2.bias": np.zeros(1)}
    try:
        _grid.run = spy
        surface.loss_surface(_resnet(False), losses.cross_entropy, Stream(x, y, batch_size=5),
                             None, a, b, plane=plane, state=state)
        conv_sizes = list(sizes)
        sizes.clear()
        surface.loss_surface(models.mlp, losses.mse, np.ones((7, 2)), np.ones((7, 1)), a, b,
                             plane=surface.random_plane(mlp_p))
    finally:
        _grid.run = run
    assert conv_sizes and all(s == (1, 1, ()) for s in conv_sizes)  # each batch, the first too
    assert sizes and sizes[0][:2] != (1, 1)  # an MLP's points share a block
