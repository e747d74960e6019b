"""A surface split across 4 devices equals the one-device surface exactly.

XLA's device count is fixed when JAX starts, so the 4-device run is a fresh Python process with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` set before jax is imported: 4 CPU
devices, the same `jax.sharding` code path a machine with 4 accelerators takes.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import numpy as np
    import functional_fit as ff
    from functional_fit import surface
    from functional_fit.surface import grid

    seen = []  # the devices each chunk was computed on, as the grid driver copies it
    to_host = grid.to_host
    grid.to_host = lambda v: (seen.append(len(v.sharding.device_set)), to_host(v))[1]

    x, y = ff.lecture_data()
    a, b = np.linspace(-1, 1, 37), np.linspace(-0.5, 5, 23)  # 851 points: 4 does not divide it
    cases = {
        "l1": lambda **kw: surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a, b, **kw),
        "poly_random": lambda **kw: surface.loss_surface(
            ff.models.polynomial, ff.losses.mse, x, y, a, b,
            plane=surface.random_plane(np.linspace(1, -1, 4), seed=1), **kw),
        "exact": lambda **kw: surface.mse_surface_exact(ff.models.polynomial, x, y, a, b,
                                                        base=np.ones(3), **kw),
    }
    equal, devices = {}, {}
    for name, run in cases.items():
        seen.clear()
        four = run()  # default: all devices
        devices[name] = sorted(set(seen))
        one = run(devices=jax.devices()[:1])
        equal[name] = bool(np.array_equal(four, one)) and four.shape == (23, 37)
    print(json.dumps({"n_devices": len(jax.devices()), "devices": devices, "equal": equal}))
    """
)


def test_four_devices_equal_one_device_exactly():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n_devices"] == 4
    assert result["devices"] == {"l1": [4], "poly_random": [4], "exact": [4]}  # the work was split
    assert result["equal"] == {"l1": True, "poly_random": True, "exact": True}


HOST_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts talk over gloo
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2,
                               process_id=int(sys.argv[2]))
    import numpy as np
    import functional_fit as ff
    from functional_fit import surface

    x, y = ff.lecture_data()
    a, b = np.linspace(-1, 1, 37), np.linspace(-0.5, 5, 23)
    both = surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a, b)  # both processes' devices
    mine = surface.loss_surface(ff.models.linear, ff.losses.l1, x, y, a, b,
                                devices=jax.local_devices())
    print(json.dumps({"processes": jax.process_count(), "devices": len(jax.devices()),
                      "equal": bool(np.array_equal(both, mine)), "shape": list(both.shape)}))
    """
)


def test_two_processes_with_jax_distributed_each_get_the_whole_surface():
    """The README's recipe for several hosts, as two processes on this machine."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        address = f"localhost:{s.getsockname()[1]}"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen([sys.executable, "-c", HOST_SCRIPT, address, str(i)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result == {"processes": 2, "devices": 2, "equal": True, "shape": [23, 37]}
