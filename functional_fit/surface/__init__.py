"""Loss surfaces: the loss over a 2-D grid of parameter vectors, streamed, in bounded memory.

The lecture draws a surface by calling the loss once per grid point in a Python loop (cells 12,
15 and 50). Here a grid point is ``w(a, b) = origin + a * u + b * v`` on a `Plane`; the usual
case, two chosen coordinates with the rest held at ``base``, is `coords_plane`. Three more planes
show models with more than two parameters: `random_plane` (Li et al. 2018), `pca_plane` (the
top two principal directions of an optimizer path, or of several paths together, with each path
projected onto the plane) and `hessian_plane` (the loss's Hessian's top two eigenvectors,
`functional_fit.hessian`).

Layout. ``jit(vmap(loss_at_point))`` over the grid makes every grid point reduce over the n
data points, a short dependent chain per point that the CPU cannot vectorize well. The streamed
layout turns the loops around: grid points are the vector axis (a block of G of them), and the
data points are the stream, summed as a tree so that no chain of adds is long
(`functional_fit.surface.kernels`). It needs a loss that is a mean of per-point terms and a
model whose prediction at x[k] depends on x[k] alone. That is decided by what they are, never
by sampling: the toolkit's own models and losses are known to be, any other pair is proven so
from its jaxpr or takes the vmapped layout (`functional_fit.surface.perpoint`), so any pure
``model(w, x)`` and ``loss(y_hat, y)`` get the right surface; the common ones get it fast.
A network (a pytree with weight matrices) takes the vmapped layout: a block's grid points
become batched matrix products, compiled on the CPU with XLA's YNNPACK dots
(`functional_fit.surface.layouts`). A loss with a convolution is computed one grid point per
compiled call instead, without those options: XLA's CPU convolutions are several times slower
in a loop's body or over a batch of kernels (`layouts.one_point_per_call`).

Memory. The grid is computed in chunks of the runtime's ``chunk_points`` points per device,
each one compiled call (`functional_fit.surface.grid`); only the output array grows with the
grid, so a 10^4 x 10^4 grid needs its 800 MB of float64 output plus a workspace of a few chunks
(tens of MB). Pass ``out=`` (a numpy array or ``np.memmap`` of shape (len(b), len(a))) to write
somewhere else; ``runtime=`` (`functional_fit.runtime`) to change the sizes.

Devices. Each call's blocks are split across ``devices`` (all of JAX's devices by default)
with `jax.shard_map` over a one-axis `Mesh`; every point is computed by the same block code
wherever it runs, so the result equals the one-device result exactly. Across several hosts,
start every process the same way and call `loss_surface` in each; it returns the whole surface
on every process:

    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU hosts only
    jax.distributed.initialize(coordinator_address="host0:1234", num_processes=N,
                               process_id=i)         # or from the cluster's environment
    z = loss_surface(model, loss, x, y, a, b)    # jax.devices() now spans every host

(`tests/test_surface_sharding.py` runs this with two processes on one machine.)

For MSE and a model linear (affine) in its parameters, `mse_surface_exact` gives the same
surface from a quadratic in (a, b) whose six coefficients come from one pass over the data: its
cost is independent of n.

Every function takes JAX's dtypes as it finds them: float64 needs JAX's 64-bit mode (see
`functional_fit.precision`); float64 inputs without it raise `PrecisionError`.

The package, by concern: `planes` (where the grid points lie), `kernels` (the losses of one
block of points), `grid` (the driver: chunks, blocks, devices), `perpoint` (which losses may
stream), `layouts` (which kernel, and its checks), `surfaces` (the public functions, their inputs checked once), `views` (the plane
and range around an optimizer's path), `files` (a surface in the files other tools read:
`save_h5`, Li et al.'s h5 layout for their plot_2D.py; `save_vtp`, VTK PolyData for
ParaView; the interactive HTML page is `functional_fit.plot.interactive`).
"""


from functional_fit import runtime as _runtime
from functional_fit.surface.files import save_h5, save_vtp
from functional_fit.surface.kernels import Quadratic, Streamed, Vmapped
from functional_fit.surface.layouts import LAYOUTS
from functional_fit.surface.lines import Line, interpolate, line
from functional_fit.surface.planes import (PCAPlane, Plane, Unraveled, check_coords, coords_plane,
                                           filter_normalized, flatten, hessian_plane, pca_plane,
                                           random_draw, random_plane)
from functional_fit.surface.surfaces import MAX_POINTS, loss_surface, mse_surface_exact
from functional_fit.surface.views import DIRECTIONS, View, around_fit, around_path, centred_values

# The runtime's defaults under the names this module gave them; they are read here, not used:
# pass ``runtime=functional_fit.runtime.defaults(..., chunk_points=...)`` to change them.
_CPU, _GPU = _runtime.defaults("cpu"), _runtime.defaults("gpu")
CHUNK_POINTS = {"cpu": _CPU.chunk_points, "gpu": _GPU.chunk_points}
VMAP_ITEMS = {"cpu": _CPU.vmap_items, "gpu": _GPU.vmap_items}
WORKSPACE_ITEMS = _CPU.workspace_items
DATA_CHUNK = _CPU.data_chunk
MAX_TERMS = _CPU.max_terms
TERM_BUDGET = _CPU.term_budget
CPU_DOT_OPTIONS = _CPU.dot_options

__all__ = [
    "CHUNK_POINTS",
    "DIRECTIONS",
    "LAYOUTS",
    "Line",
    "MAX_POINTS",
    "PCAPlane",
    "Plane",
    "Quadratic",
    "Streamed",
    "Unraveled",
    "View",
    "Vmapped",
    "around_fit",
    "around_path",
    "centred_values",
    "check_coords",
    "interpolate",
    "line",
    "coords_plane",
    "filter_normalized",
    "flatten",
    "hessian_plane",
    "loss_surface",
    "mse_surface_exact",
    "pca_plane",
    "random_draw",
    "random_plane",
    "save_h5",
    "save_vtp",
]
