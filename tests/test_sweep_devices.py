"""Sweeps split across devices: results equal the one-device run.

JAX fixes its device count when it starts, so the check runs in a fresh Python with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before jax is imported: four CPU
devices, a 1-D mesh over them, the (w0, lr) pairs sharded four ways.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import numpy as np
    import functional_fit as ff
    from functional_fit import models, sweep as sw

    assert len(jax.devices()) == 4, jax.devices()
    x, y = ff.lecture_data(n=37)
    w0s = np.stack([np.zeros(3), np.linspace(0.5, -0.5, 3)])
    lrs = [0.01, 0.05, 0.1, 0.3, 1.0]  # 2 x 5 = 10 pairs: padded to 12, three per device
    for optimizer, kw in (("gd", dict(steps=20)),
                          ("adam", dict(epochs=3, batch_size=8, seeds=[0, 5])),
                          ("sgd", dict(epochs=2, seeds=[1], chunk_size=6, return_paths=True))):
        one = sw.sweep(optimizer, w0s, x, y, lrs, model=models.polynomial,
                       devices=jax.devices()[:1], **kw)
        four = sw.sweep(optimizer, w0s, x, y, lrs, model=models.polynomial, **kw)
        assert len(four.params.sharding.device_set) == 4, four.params.sharding
        for a, b in zip(one, four):
            if a is not None:
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    print("ok")
""")


def test_four_devices_equal_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
