"""Ready for the accelerator, checked on the CPU: surfaces that stay on the device, sweeps whose
memory does not grow with the steps, and the GPU benchmark's smoke run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import functional_fit as ff
from functional_fit import InputError, losses, models, registry, runtime, surface
from functional_fit.surface import grid
from functional_fit import sweep as sw

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("chunk", [None, 700])
@pytest.mark.parametrize("layout", ["auto", "vmap"])
def test_a_surface_kept_on_the_device_equals_the_host_one(lecture_xy, chunk, layout):
    """The device-resident result is the host result, bit for bit, in one chunk or several."""
    x, y = lecture_xy
    # chunk: several compiled calls, the last one short
    rt = None if chunk is None else runtime.defaults(jax.default_backend(), chunk_points=chunk)
    a, b = np.linspace(-1, 1, 61), np.linspace(-0.5, 5, 47)
    host = surface.loss_surface(models.linear, losses.l1, x, y, a, b, layout=layout,
                                keep_on_device=False, runtime=rt)  # a GPU keeps it by default
    dev = surface.loss_surface(models.linear, losses.l1, x, y, a, b, layout=layout,
                               keep_on_device=True, runtime=rt)
    assert isinstance(host, np.ndarray) and isinstance(dev, jax.Array)
    assert dev.shape == host.shape == (47, 61)
    np.testing.assert_array_equal(np.asarray(dev), host)


@pytest.mark.parametrize("where", ["host", "device"])
def test_the_per_point_check_runs_on_the_device_too(lecture_xy, monkeypatch, where):
    """The per-point check is a guard behind the proof (`surface.perpoint`): a loss that is
    not a mean of per-point terms, let through as if proven, falls back to the vmapped layout
    there too; one that is keeps the streamed layout. "device": the accelerator's way of
    checking (one compiled comparison where the chunk lies), taken here on the CPU."""
    from functional_fit.surface import perpoint

    x, y = lecture_xy
    monkeypatch.setattr(perpoint, "streamable", lambda model, loss, spec: True)
    if where == "device":
        monkeypatch.setattr(grid, "on_host", lambda values: False)
    kinds = []
    real = grid.run
    monkeypatch.setattr(grid, "run", lambda kernel, *args, **kw: (
        kinds.append(type(kernel).__name__), real(kernel, *args, **kw))[1])
    worst = lambda y_hat, y: jnp.max(jnp.abs(y_hat - y))  # noqa: E731
    a, b = np.linspace(-1, 1, 9), np.linspace(-1, 1, 7)
    w0, w1 = np.meshgrid(a, b)
    residuals = np.abs(w0[..., None] + w1[..., None] * x - y)  # (7, 9, n)
    dev = surface.loss_surface(models.linear, worst, x, y, a, b, keep_on_device=True)
    np.testing.assert_allclose(np.asarray(dev), np.max(residuals, axis=-1), rtol=1e-15)
    assert kinds == ["Streamed", "Vmapped"]
    dev = surface.loss_surface(models.linear, losses.l1, x, y, a, b, keep_on_device=True)
    np.testing.assert_allclose(np.asarray(dev), np.mean(residuals, axis=-1), rtol=1e-14)
    assert kinds == ["Streamed", "Vmapped", "Streamed"]


def test_keep_on_device_with_out_is_refused(lecture_xy):
    x, y = lecture_xy
    with pytest.raises(InputError, match="keep_on_device"):
        surface.loss_surface(models.linear, losses.l1, x, y, np.zeros(3), np.zeros(2),
                             out=np.zeros((2, 3)), keep_on_device=True)


def _sweep_memory(steps: int, return_paths: bool) -> int:
    """Bytes the compiled sweep of 64 GD runs needs beyond its inputs (XLA's own analysis)."""
    x, y = ff.lecture_data()
    compiled = sw.sweep_jit.lower(
        registry.optimizer("gd"), jnp.zeros((64, 3)), jnp.asarray(x), jnp.asarray(y),
        jnp.ones(64), None, model=models.polynomial, loss=losses.l1, steps=steps,
        return_paths=return_paths).compile()
    mem = compiled.memory_analysis()
    return mem.temp_size_in_bytes + mem.output_size_in_bytes


def test_sweep_memory_does_not_grow_with_the_steps():
    """Without paths a run keeps no per-step array: 100 and 5,000 steps need the same memory."""
    assert _sweep_memory(100, False) == _sweep_memory(5000, False)
    # With paths it grows with R * steps, as it must: the check above can tell the difference.
    assert _sweep_memory(5000, True) > 20 * _sweep_memory(100, False)


def test_sweep_records_where_each_run_diverged(lecture_xy):
    x, y = lecture_xy
    res = sw.sweep("gd", np.zeros(2), x, y, [0.3, 1e6], loss=losses.mse, steps=50)
    assert np.asarray(res.diverged).tolist() == [False, True]
    with_paths = sw.sweep("gd", np.zeros(2), x, y, [1e6], loss=losses.mse, steps=50,
                          return_paths=True)
    losses_along = np.array([losses.mse(models.linear(w, x), y) for w in with_paths.paths[0][:-1]])
    first = int(np.flatnonzero(~np.isfinite(losses_along))[0])
    assert np.asarray(res.diverged_at).tolist() == [-1, first]


def test_gpu_benchmark_smoke_run(tmp_path):
    """benchmarks/gpu.py --smoke: the same code on the CPU with tiny sizes, in seconds."""
    out = tmp_path / "gpu.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke",
                           "--out", str(out)], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    for target in ("L1 surface", "Adam sweep", "compiled fit", "torch.func.vmap", "jit(vmap)"):
        assert target in text, target
    assert "agree" in text
