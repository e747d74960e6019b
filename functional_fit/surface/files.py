"""Loss surfaces in the files other tools read: Li et al.'s h5 layout, and VTK's PolyData.

- `save_h5`: the h5 file of Li et al.'s loss-landscape code (github.com/tomgoldstein/
  loss-landscape), whose ``plot_2D.py``, ``plot_1D.py`` and ``h52vtp.py`` draw it.
- `save_vtp`: the surface as a VTK XML PolyData file (.vtp) for ParaView, the mesh that their
  ``h52vtp.py`` writes, for any grid (theirs assumes a square one).

Both take a surface as `functional_fit.surface.loss_surface` returns it: ``z`` of shape
(len(b), len(a)), row j and column i holding the loss at (a[i], b[j]) (``np.meshgrid``'s 'xy'
layout). Both check every input before anything is written (`output_path`), and write to a
temporary file beside the output that replaces it only once complete (`atomic_output`), so
that no half-written file is left when writing fails.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from pathlib import Path

import numpy as np

from functional_fit import checks as _checks
from functional_fit.checks import InputError

#: The key of the loss surface in Li et al.'s h5 files (``plot_surface.py``'s ``loss_key``).
LOSS_KEY = "train_loss"
#: Their keys of the grid's axes.
X_KEY, Y_KEY = "xcoordinates", "ycoordinates"
#: The offset of ``h52vtp.py``'s logarithm: it draws log(z + 0.1).
LOG_OFFSET = 0.1


# --------------------------------------------------------------------------- checks


def output_path(name: str, path) -> Path:
    """`path` as a `Path` a file can be written at; InputError naming `name` otherwise.

    Refused: a path that is not a str or os.PathLike, an empty one, one that names a folder or
    anything but a regular file (a device, a FIFO), one whose folder does not exist or cannot
    be written to. A symbolic link is written through, as the command line does: the path
    returned is its target's.
    """
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise InputError(f"{name} must be a file path, got {path!r}")
    path = Path(os.fspath(path))
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.is_dir():
        raise InputError(f"{name} names a folder, not a file: {str(path)!r}")
    if path.exists() and not path.is_file():
        raise InputError(f"{name} names something other than a regular file: {str(path)!r}")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"{name}: its folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{name}: its folder {str(folder)!r} is not writable")
    return path


def axis(name: str, values) -> np.ndarray:
    """`values` as a float64 (n,) array, finite and strictly increasing; InputError otherwise."""
    values = _checks.vector(name, values, dtype=np.float64)
    if values.shape[0] > 1 and not np.all(np.diff(values) > 0):
        raise InputError(f"{name} must be strictly increasing, got {values[:4].tolist()}...")
    return values


def surface_values(name: str, z, shape: tuple) -> np.ndarray:
    """`z` as a float64 array of `shape`; non-finite values (diverged points) are kept.

    InputError naming `name` for anything but real numbers, or another shape (with a hint when
    `z` is the transpose of what was expected).
    """
    if hasattr(z, "detach"):  # a torch tensor
        z = z.detach().cpu().numpy()
    try:
        z = np.asarray(z)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} must be an array of numbers: {exc}") from None
    if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)):
        raise InputError(f"{name} must be an array of real numbers, got dtype {z.dtype}")
    if z.shape != tuple(shape):
        want = "(len(a),)" if len(shape) == 1 else "(len(b), len(a))"
        hint = "; it is transposed: row j is b[j]" if z.shape == tuple(shape)[::-1] else ""
        raise InputError(f"{name} must have shape {want} = {tuple(shape)}, got {z.shape}{hint}")
    return z.astype(np.float64)


def grid(a, b, z, *, least: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A surface's inputs checked: (a (na,), b (nb,), z (nb, na)), each axis at least `least`
    long."""
    a, b = axis("a", a), axis("b", b)
    for name, values in (("a", a), ("b", b)):
        if values.shape[0] < least:
            raise InputError(f"{name} must hold at least {least} values, got {values.shape[0]}")
    return a, b, surface_values("z", z, (b.shape[0], a.shape[0]))


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_output(path: Path):
    """Yield a new, empty temporary file's path beside `path`; rename it over `path` when the
    block ends, delete it when the block raises.

    The temporary file gets the permissions of the umask, as ``open`` would give `path`, and
    keeps the suffix of `path`. Check `path` with `output_path` first.
    """
    path = Path(path)
    while True:
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- h5


def save_h5(path, a, b, z, **more) -> None:
    """Write a surface in the h5 layout of Li et al.'s ``plot_surface.py``.

    Their keys: ``xcoordinates`` (na,) holds `a`, ``ycoordinates`` (nb,) holds `b`,
    ``train_loss`` holds `z`, and every keyword of `more` (``train_acc``, ``test_loss``,
    ``test_acc``, ...) one more surface of the same shape; all float64.

    The layout of a surface. ``plot_surface.py`` creates ``train_loss`` with shape
    (len(x), len(y)) but fills it through its flat (C-order) index: the value at flat index
    ``j * len(x) + i`` is the loss at (x[i], y[j]), because ``scheduler.py`` enumerates the
    coordinates from ``np.meshgrid(x, y)`` raveled. ``plot_2D.py`` and ``h52vtp.py`` read the
    array back the same way, paired with ``np.meshgrid(x, y)`` of shape (len(y), len(x)). So
    the flat order is ours, not a transpose: this writes `z` (len(b), len(a)) unchanged,
    ``f["train_loss"][j, i]`` being the loss at (a[i], b[j]). On a square grid, the only kind
    their scripts handle, the file is what ``plot_surface.py`` writes. On another grid their
    declared shape would not match ``np.meshgrid(x, y)``, and ``plot_2D.py`` could not draw
    it; (len(b), len(a)) it can (``h52vtp.py`` draws square grids only; `save_vtp` any).

    A 1-D surface (``b=None``): no ``ycoordinates``, and ``train_loss`` of shape (na,) at a,
    as ``plot_1D.py`` reads it. That script also reads ``train_acc`` (and ``test_acc`` with
    ``test_loss``): pass them to draw with it.

    Non-finite losses (diverged points) are written as they are.

    Args:
      path: the .h5 file to write (replaced if it exists); its folder must exist.
      a: (na,) the grid's x values, strictly increasing.
      b: (nb,) its y values, strictly increasing; None for a 1-D surface.
      z: (nb, na) the losses, row j at b[j] and column i at a[i]; (na,) when b is None.
      **more: more surfaces by key, each of z's shape.

    Returns:
      None; the file holds the keys above and nothing else.

    Examples:
      >>> import h5py, os, tempfile
      >>> out = os.path.join(tempfile.mkdtemp(), "s.h5")
      >>> a, b = np.linspace(-1, 1, 3), np.linspace(0, 1, 2)
      >>> save_h5(out, a, b, a[None, :] + 10 * b[:, None], train_acc=np.ones((2, 3)))
      >>> with h5py.File(out, "r") as f:
      ...     sorted(f), f["train_loss"][1, 2]
      (['train_acc', 'train_loss', 'xcoordinates', 'ycoordinates'], np.float64(11.0))
    """
    import h5py

    path = output_path("path", path)
    data = _h5_data(a, b, z, more)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        for key, values in data.items():
            f.create_dataset(key, data=values)


def _h5_data(a, b, z, more: dict) -> dict:
    """The h5 file's datasets by key, checked."""
    if b is None:
        a = axis("a", a)
        data = {X_KEY: a, LOSS_KEY: surface_values("z", z, a.shape)}
    else:
        a, b, z = grid(a, b, z)
        data = {X_KEY: a, Y_KEY: b, LOSS_KEY: z}
    for key, values in more.items():
        if key in data or key == Y_KEY:
            held = {X_KEY: "a", Y_KEY: "b", LOSS_KEY: "z"}[key]
            raise InputError(f"{key}: that key holds {held}; name another surface")
        if not key.isidentifier():
            raise InputError(f"{key!r} is not a key for an h5 surface: use a name like test_loss")
        data[key] = surface_values(key, values, data[LOSS_KEY].shape)
    return data


# --------------------------------------------------------------------------- vtp


def save_vtp(path, a, b, z, *, log: bool = False, zmax=None) -> None:
    """Write a surface as a VTK XML PolyData file (.vtp), which ParaView opens.

    The mesh of Li et al.'s ``h52vtp.py``, for any grid: point k = j * na + i at
    (a[i], b[j], w[j, i]), one quad per grid cell (points k, k + 1, k + na + 1, k + na), the
    drawn value w as point data ``zvalue`` and each quad's mean of its corners as cell data
    ``averaged zvalue`` (their names). w is z, with, as in ``h52vtp.py``, values above `zmax`
    set to `zmax` and then, with `log`, log(z + 0.1). Non-finite losses (diverged points),
    which no mesh can hold, are set to `zmax` (nan and +inf) or to the largest finite value
    when no `zmax` is given, -inf to the smallest; point data ``clipped`` (UInt8) is 1 at
    every point whose value was replaced, 0 elsewhere. Arrays are Float64 and Int64, base64
    encoded in the XML (``format="binary"``).

    Args:
      path: the .vtp file to write (replaced if it exists); its folder must exist.
      a: (na,) the grid's x values, strictly increasing, na >= 2.
      b: (nb,) its y values, strictly increasing, nb >= 2.
      z: (nb, na) the losses, row j at b[j] and column i at a[i].
      log: draw log(z + 0.1) (z must then stay above -0.1).
      zmax: the largest value drawn, or None.

    Returns:
      None; the file holds na * nb points and (na - 1) * (nb - 1) quads.
    """
    path = output_path("path", path)
    a, b, z = grid(a, b, z, least=2)
    log = _checks.flag("log", log)
    zmax = None if zmax is None else _checks.finite_float("zmax", zmax)
    w, clipped = drawn_values(z, log=log, zmax=zmax)
    text = _polydata(a, b, w, clipped)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text, encoding="ascii")


def drawn_values(z, *, log: bool = False, zmax=None) -> tuple[np.ndarray, np.ndarray]:
    """The values `save_vtp` draws for `z`: (w, clipped), both of z's shape.

    w is z with non-finite values replaced (nan and +inf by `zmax`, or by the largest finite
    value without one; -inf by the smallest), values above `zmax` set to it, then with `log`
    log(w + 0.1); clipped is True where a value was replaced or set to `zmax`.
    """
    finite = np.isfinite(z)
    if not finite.any():
        raise InputError("z has no finite value: nothing to draw")
    top = float(np.max(z[finite])) if zmax is None else zmax
    w = np.where(np.isneginf(z), np.min(z[finite]), np.where(finite, z, top))
    clipped = ~finite | (w > top)
    w = np.minimum(w, top)
    if log:
        if np.min(w) + LOG_OFFSET <= 0:
            raise InputError(f"log: draws log(z + {LOG_OFFSET}), which needs z > -{LOG_OFFSET}; "
                             f"the least z is {np.min(w):.6g}")
        w = np.log(w + LOG_OFFSET)
    return w, clipped


def _data_array(values: np.ndarray, vtk_type: str, name: str, components: int = 1) -> str:
    """One DataArray element: `values` little-endian, base64 after a UInt64 byte count."""
    raw = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()
    header = np.array([len(raw)], dtype="<u8").tobytes()
    text = base64.b64encode(header + raw).decode("ascii")
    return (f'        <DataArray type="{vtk_type}" Name="{name}" NumberOfComponents="{components}"'
            f' format="binary">\n          {text}\n        </DataArray>\n')


def _polydata(a: np.ndarray, b: np.ndarray, w: np.ndarray, clipped: np.ndarray) -> str:
    """The .vtp file's text for the drawn values w (nb, na) over the grid a (na,) x b (nb,)."""
    na, nb = a.shape[0], b.shape[0]
    x, y = np.meshgrid(a, b)  # (nb, na) each, point k = j * na + i
    points = np.stack([x.ravel(), y.ravel(), w.ravel()], axis=1)  # (na * nb, 3)
    corner = (np.arange(nb - 1)[:, None] * na + np.arange(na - 1)[None, :]).ravel()  # (cells,)
    quads = np.stack([corner, corner + 1, corner + na + 1, corner + na], axis=1)  # (cells, 4)
    offsets = 4 * np.arange(1, quads.shape[0] + 1, dtype=np.int64)  # (cells,)
    cell_mean = w.ravel()[quads].mean(axis=1)  # (cells,)
    return (
        '<?xml version="1.0"?>\n'
        '<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian" '
        'header_type="UInt64">\n  <PolyData>\n'
        f'    <Piece NumberOfPoints="{points.shape[0]}" NumberOfVerts="0" NumberOfLines="0" '
        f'NumberOfStrips="0" NumberOfPolys="{quads.shape[0]}">\n'
        '      <PointData Scalars="zvalue">\n'
        + _data_array(w.ravel(), "Float64", "zvalue")
        + _data_array(clipped.ravel().astype(np.uint8), "UInt8", "clipped")
        + '      </PointData>\n      <CellData Scalars="averaged zvalue">\n'
        + _data_array(cell_mean, "Float64", "averaged zvalue")
        + "      </CellData>\n      <Points>\n"
        + _data_array(points, "Float64", "Points", 3)
        + "      </Points>\n      <Polys>\n"
        + _data_array(quads.astype(np.int64).ravel(), "Int64", "connectivity")
        + _data_array(offsets, "Int64", "offsets")
        + "      </Polys>\n    </Piece>\n  </PolyData>\n</VTKFile>\n"
    )
