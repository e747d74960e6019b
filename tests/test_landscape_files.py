"""A loss surface in the files other tools read, each read back by the other tool's library.

- `surface.save_h5`: read with h5py as Li et al.'s loss-landscape scripts read it (their
  ``plot_2D.py``, ``h52vtp.py`` and ``plot_1D.py``, whose reading lines are re-written here),
  and compared with what their ``plot_surface.py`` itself writes for the same surface.
- `surface.save_vtp`: read with VTK's own ``vtkXMLPolyDataReader``: points, quads, values.
- `plot.interactive`: loaded in a headless Chromium (as tests/test_handout.py does): drawn,
  offline, without console errors, rotatable with the mouse; a screenshot is kept in
  ``tests/artifacts/``.

Every function refuses bad input in one line naming the argument and writes nothing; a write
that fails leaves the old file as it was and no temporary beside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from functional_fit import InputError, plot, surface
from tests import browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def loss(a, b):
    """A surface with distinct values everywhere and no symmetry between a and b."""
    return a**2 + 3.0 * b + a * b + 0.5


#: A grid that is not square, so that a transpose cannot pass for the layout.
A = np.linspace(-1.0, 1.0, 5)  # (5,)
B = np.linspace(0.0, 2.0, 3)  # (3,)
Z = loss(A[None, :], B[:, None])  # (3, 5): row j at B[j], column i at A[i]


# --------------------------------------------------------------------------- h5


def their_plot_surface_losses(x, y, f):
    """What Li et al.'s plot_surface.py stores under train_loss: its crunch() creates
    ``-np.ones((len(x), len(y)))`` and fills ``losses.ravel()[ind]`` at the coordinates that
    scheduler.get_unplotted_indices enumerates from ``np.meshgrid(x, y)`` raveled."""
    losses = -np.ones(shape=(len(x), len(y)))
    inds = np.array(range(losses.size))[losses.ravel() <= 0]
    xcoord_mesh, ycoord_mesh = np.meshgrid(x, y)
    coords = np.c_[xcoord_mesh.ravel()[inds], ycoord_mesh.ravel()[inds]]
    for ind, coord in zip(inds, coords):
        losses.ravel()[ind] = f(coord[0], coord[1])
    return losses


def test_h5_is_what_plot_2D_and_h52vtp_read(tmp_path):
    out = tmp_path / "s.h5"
    surface.save_h5(out, A, B, Z)
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["train_loss", "xcoordinates", "ycoordinates"]
        # plot_2D.py, plot_2d_contour: X, Y = np.meshgrid(x, y); Z = f[surf_name][:]; then
        # plt.contour(X, Y, Z): Z[j, i] is drawn at (X[j, i], Y[j, i]).
        x = np.array(f["xcoordinates"][:])
        y = np.array(f["ycoordinates"][:])
        X, Y = np.meshgrid(x, y)
        Zf = np.array(f["train_loss"][:])
        # h52vtp.py, h5_to_vtp: the meshgrid and the values raveled side by side.
        xs, ys, zs = X.ravel(), Y.ravel(), f["train_loss"][:].ravel()
    np.testing.assert_array_equal(x, A)
    np.testing.assert_array_equal(y, B)
    assert Zf.shape == X.shape == (3, 5)  # matplotlib's contour needs Z of X's shape
    for i, j in [(0, 0), (4, 0), (1, 2), (3, 1)]:  # (a, b) points, a[i] and b[j]
        assert Zf[j, i] == loss(A[i], B[j]) and (X[j, i], Y[j, i]) == (A[i], B[j])
    np.testing.assert_array_equal(zs, loss(xs, ys))


@pytest.mark.parametrize("n", [(5, 3), (4, 4)], ids=["rectangle", "square"])
def test_h5_holds_the_values_in_plot_surface_order(n, tmp_path):
    """Flat order as plot_surface.py fills it, on any grid; on a square one, its very array."""
    a, b = np.linspace(-1.0, 1.0, n[0]), np.linspace(0.0, 2.0, n[1])
    surface.save_h5(tmp_path / "s.h5", a, b, loss(a[None, :], b[:, None]))
    theirs = their_plot_surface_losses(a, b, loss)  # (len(a), len(b))
    with h5py.File(tmp_path / "s.h5", "r") as f:
        ours = f["train_loss"][:]
    np.testing.assert_array_equal(ours.ravel(), theirs.ravel())
    if n[0] == n[1]:
        np.testing.assert_array_equal(ours, theirs)


def test_h5_more_surfaces_and_a_1d_curve(tmp_path):
    acc = 100.0 - Z  # (3, 5)
    surface.save_h5(tmp_path / "s.h5", A, B, Z, train_acc=acc, test_loss=Z + 1, test_acc=acc)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert sorted(f) == ["test_acc", "test_loss", "train_acc", "train_loss",
                             "xcoordinates", "ycoordinates"]
        np.testing.assert_array_equal(f["test_loss"][:], Z + 1)
        assert all(f[k].dtype == np.float64 for k in f)
    line = loss(A, 0.0)  # (5,)
    surface.save_h5(tmp_path / "c.h5", A, None, line, train_acc=np.full(5, 90.0))
    with h5py.File(tmp_path / "c.h5", "r") as f:
        # plot_1D.py, plot_1d_loss_err: x = f['xcoordinates'][:]; train_loss = f['train_loss'][:];
        # train_acc = f['train_acc'][:]; then ax1.plot(x, train_loss).
        assert "ycoordinates" not in f
        x, train_loss, train_acc = (f[k][:] for k in ("xcoordinates", "train_loss", "train_acc"))
    assert x.shape == train_loss.shape == train_acc.shape == (5,)
    np.testing.assert_array_equal(train_loss, loss(x, 0.0))


def test_h5_keeps_diverged_points(tmp_path):
    z = Z.copy()
    z[1, 2], z[2, 4] = np.nan, np.inf
    surface.save_h5(tmp_path / "s.h5", A, B, z)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        np.testing.assert_array_equal(f["train_loss"][:], z)  # nan == nan here


# --------------------------------------------------------------------------- vtp


def read_vtp(path):
    """(points (N, 3), quads (cells, 4), point arrays by name, cell arrays by name), by VTK."""
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkXMLPolyDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    assert reader.GetErrorCode() == 0
    poly = reader.GetOutput()
    polys = poly.GetPolys()
    offsets = vtk_to_numpy(polys.GetOffsetsArray())
    assert np.all(np.diff(offsets) == 4)  # quads
    quads = vtk_to_numpy(polys.GetConnectivityArray()).reshape(-1, 4)
    assert poly.GetNumberOfPolys() == quads.shape[0]

    def arrays(data):
        return {data.GetArrayName(k): vtk_to_numpy(data.GetArray(k))
                for k in range(data.GetNumberOfArrays())}

    points = vtk_to_numpy(poly.GetPoints().GetData())
    return points, quads, arrays(poly.GetPointData()), arrays(poly.GetCellData())


def test_vtp_read_by_vtk_is_the_surface(tmp_path):
    surface.save_vtp(tmp_path / "s.vtp", A, B, Z)
    points, quads, point_data, cell_data = read_vtp(tmp_path / "s.vtp")
    assert points.shape == (15, 3) and quads.shape == (4 * 2, 4)
    for i, j in [(0, 0), (4, 0), (1, 2), (3, 1)]:
        k = j * 5 + i  # h52vtp.py's order: np.meshgrid(x, y) raveled
        np.testing.assert_array_equal(points[k], [A[i], B[j], loss(A[i], B[j])])
        assert point_data["zvalue"][k] == loss(A[i], B[j])
    np.testing.assert_array_equal(point_data["clipped"], np.zeros(15))
    # each quad: a grid cell's four corners, in h52vtp.py's order
    cells = [(i, j) for j in range(2) for i in range(4)]
    for (i, j), quad in zip(cells, quads):
        np.testing.assert_array_equal(points[quad, :2],
                                      [[A[i], B[j]], [A[i + 1], B[j]], [A[i + 1], B[j + 1]],
                                       [A[i], B[j + 1]]])
        assert cell_data["averaged zvalue"][cells.index((i, j))] == pytest.approx(
            np.mean(loss(points[quad, 0], points[quad, 1])), rel=1e-15)


def test_vtp_draws_diverged_points_at_zmax_or_the_largest_finite(tmp_path):
    z = Z.copy()
    z[1, 2], z[2, 4], z[0, 0] = np.nan, np.inf, -np.inf
    finite = np.isfinite(z)
    surface.save_vtp(tmp_path / "a.vtp", A, B, z)
    _, _, data, _ = read_vtp(tmp_path / "a.vtp")
    want = z.copy()
    want[1, 2] = want[2, 4] = z[finite].max()
    want[0, 0] = z[finite].min()
    np.testing.assert_array_equal(data["zvalue"], want.ravel())
    np.testing.assert_array_equal(data["clipped"], (~finite).ravel())

    surface.save_vtp(tmp_path / "b.vtp", A, B, z, zmax=4.0, log=True)
    points, _, data, _ = read_vtp(tmp_path / "b.vtp")
    # h52vtp.py: z_array[z_array > zmax] = zmax; then z_array = np.log(z_array + 0.1)
    want = np.where(finite, z, 4.0)
    want[0, 0] = z[finite].min()
    want[want > 4.0] = 4.0
    np.testing.assert_allclose(data["zvalue"], np.log(want + 0.1).ravel(), rtol=1e-15)
    np.testing.assert_array_equal(points[:, 2], data["zvalue"])
    np.testing.assert_array_equal(data["clipped"], (~finite | (z > 4.0)).ravel())


# --------------------------------------------------------------------------- the HTML page

#: The handout test's flags (tests/test_handout.py): a headless Chromium as on CI, with no
#: traffic of its own; plotly's 3-D scene draws with Chromium's software WebGL.
T = np.linspace(0.0, 1.0, 40)  # (40,)
#: Two paths: (a, b) drawn at the surface's height, and (a, b, loss) as given.
PATHS = {"gd": np.stack([1.0 - T, 2.0 * (1.0 - T) ** 2], axis=1),
         "adam": np.stack([-T, 2.0 * T, np.full(40, 3.0)], axis=1)}


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("landscape") / "landscape.html"
    plot.interactive(out, A, B, Z, PATHS, title="A test surface", loss_name="L")
    return out


def test_the_page_is_one_file_with_plotly_inlined(page_file):
    text = page_file.read_text(encoding="utf-8")
    assert "<script src=" not in text and "<link" not in text
    assert "Plotly.newPlot" in text and text.count("<script") >= 2  # plotly.js, then the plot
    assert "<title>A test surface</title>" in text


@pytest.fixture(scope="module")
def browser_page(page_file, tmp_path_factory):
    """The page loaded in headless Chromium: (page, url, requests made, console errors)."""
    url = page_file.resolve().as_uri()
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with browser.loaded(url, profile, wait_for="#landscape #scene canvas") as (page, requests,
                                                                            errors):
        yield page, url, requests, errors


def test_browser_draws_the_surface_offline_without_errors(browser_page):
    page, url, requests, errors = browser_page
    page.wait_for_load_state("networkidle")
    assert [r for r in requests if r != url and not r.startswith("data:")] == []
    assert page.locator(".js-plotly-plot").count() == 1
    box = page.locator("#landscape #scene canvas").bounding_box()
    assert box["width"] > 300 and box["height"] > 300
    assert "WebGL is not supported" not in page.inner_text("body")
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "landscape.png"
    page.screenshot(path=str(shot))
    print(f"\nlandscape screenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_browser_draws_each_path_once_in_the_legend_on_the_surface(browser_page):
    traces = browser_page[0].evaluate("""() => document.getElementById('landscape')._fullData
        .map(t => ({type: t.type, name: t.name, legend: t.showlegend,
                    color: t.line ? t.line.color : null, z: t.z ? Array.from(t.z) : null}))""")
    lines = [t for t in traces if t["type"] in ("scatter3d", "scatter")]
    assert [t["name"] for t in lines if t["legend"]] == ["gd", "adam"]
    for name in PATHS:
        colors = {t["color"] for t in lines if t["name"] == name}
        assert len(colors) == 1 and len([t for t in lines if t["name"] == name]) == 2
    assert len({t["color"] for t in lines}) == 2
    on_surface = next(t["z"] for t in traces if t["type"] == "scatter3d" and t["name"] == "gd")
    reference = RegularGridInterpolator((B, A), Z, method="linear")  # points (b, a)
    want = reference(np.stack([PATHS["gd"][:, 1], PATHS["gd"][:, 0]], axis=1))
    np.testing.assert_allclose(on_surface, want, rtol=1e-12)
    given = next(t["z"] for t in traces if t["type"] == "scatter3d" and t["name"] == "adam")
    np.testing.assert_array_equal(given, PATHS["adam"][:, 2])


def test_browser_the_mouse_rotates_the_surface(browser_page):
    page = browser_page[0]
    eye = "() => document.getElementById('landscape')._fullLayout.scene.camera.eye"
    before = page.evaluate(eye)
    box = page.locator("#landscape #scene canvas").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 150, y + 40, steps=3)
    page.mouse.up()
    after = page.evaluate(eye)
    assert max(abs(after[k] - before[k]) for k in "xyz") > 0.1


def test_interactive_leaves_points_outside_the_grid_off_the_surface():
    points = np.array([[0.0, 1.0], [1.5, 1.0], [0.0, -0.1]])  # inside, beyond a, below b
    got = plot.surface_at(A, B, Z, points)
    assert got[0] == pytest.approx(loss(0.0, 1.0), rel=1e-14)  # a grid point of A, B
    assert np.isnan(got[1:]).all()


# --------------------------------------------------------------------------- bad input


class Bad(NamedTuple):
    """One bad call: it must raise InputError saying `says`, and write nothing."""

    call: Callable  # call(folder)
    says: str


def _z(shape):
    return np.zeros(shape)


BAD = {
    "h5 z transposed": Bad(lambda t: surface.save_h5(t / "s.h5", A, B, Z.T),
                           "z must have shape (len(b), len(a)) = (3, 5), got (5, 3); it is "
                           "transposed"),
    "h5 1-D z of the wrong length": Bad(lambda t: surface.save_h5(t / "s.h5", A, None, _z(4)),
                                        "z must have shape (len(a),) = (5,), got (4,)"),
    "h5 more of another shape": Bad(lambda t: surface.save_h5(t / "s.h5", A, B, Z,
                                                              train_acc=_z((3, 4))),
                                    "train_acc must have shape (len(b), len(a))"),
    "h5 more named train_loss": Bad(lambda t: surface.save_h5(t / "s.h5", A, B, Z,
                                                              train_loss=Z),
                                    "train_loss: that key holds z"),
    "h5 a decreasing": Bad(lambda t: surface.save_h5(t / "s.h5", A[::-1], B, Z),
                           "a must be strictly increasing"),
    "h5 b with a nan": Bad(lambda t: surface.save_h5(t / "s.h5", A, [0.0, np.nan, 1.0], Z),
                           "b contains a non-finite value"),
    "h5 z of strings": Bad(lambda t: surface.save_h5(t / "s.h5", A, B, Z.astype(str)),
                           "z must be an array of real numbers"),
    "h5 missing folder": Bad(lambda t: surface.save_h5(t / "no" / "s.h5", A, B, Z),
                             "path: its folder"),
    "h5 path a folder": Bad(lambda t: surface.save_h5(t, A, B, Z), "path names a folder"),
    "h5 path not a path": Bad(lambda t: surface.save_h5(3, A, B, Z),
                              "path must be a file path"),
    "vtp one row": Bad(lambda t: surface.save_vtp(t / "s.vtp", A, [0.0], Z[:1]),
                       "b must hold at least 2 values"),
    "vtp all diverged": Bad(lambda t: surface.save_vtp(t / "s.vtp", A, B, Z * np.nan),
                            "z has no finite value"),
    "vtp log of negative": Bad(lambda t: surface.save_vtp(t / "s.vtp", A, B, Z - 10, log=True),
                               "log: draws log(z + 0.1), which needs z > -0.1"),
    "vtp zmax infinite": Bad(lambda t: surface.save_vtp(t / "s.vtp", A, B, Z, zmax=np.inf),
                             "zmax must be finite"),
    "vtp log not a flag": Bad(lambda t: surface.save_vtp(t / "s.vtp", A, B, Z, log="yes"),
                              "log must be True or False"),
    "vtp path a device": Bad(lambda t: surface.save_vtp("/dev/null", A, B, Z),
                             "path names something other than a regular file"),
    "html z transposed": Bad(lambda t: plot.interactive(t / "p.html", A, B, Z.T),
                             "z must have shape (len(b), len(a))"),
    "html path of the wrong width": Bad(
        lambda t: plot.interactive(t / "p.html", A, B, Z, {"gd": _z((4, 4))}),
        "paths['gd'] must have shape (T, 2) or (T, 3), got (4, 4)"),
    "html path with a nan": Bad(
        lambda t: plot.interactive(t / "p.html", A, B, Z, {"gd": [[0.0, np.nan]]}),
        "paths['gd'] contains a non-finite value"),
    "html paths not a mapping": Bad(lambda t: plot.interactive(t / "p.html", A, B, Z, [_z(2)]),
                                    "paths must map names to (T, 2) arrays"),
    "html title not text": Bad(lambda t: plot.interactive(t / "p.html", A, B, Z, title=3),
                               "title must be a string"),
    "html axes one name": Bad(lambda t: plot.interactive(t / "p.html", A, B, Z, axes="ab"),
                              "axes must be two names"),
    "html all diverged": Bad(lambda t: plot.interactive(t / "p.html", A, B, Z * np.inf),
                             "z has no finite value"),
    "h5 more named ycoordinates": Bad(lambda t: surface.save_h5(t / "s.h5", A, None, A,
                                                                ycoordinates=A),
                                      "ycoordinates: that key holds b"),
    "html missing folder": Bad(lambda t: plot.interactive(t / "no" / "p.html", A, B, Z),
                               "path: its folder"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_naming_it_and_writes_nothing(name, tmp_path):
    with pytest.raises(InputError) as exc:
        BAD[name].call(tmp_path)
    assert BAD[name].says in str(exc.value)
    assert "\n" not in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_read_only_folder_is_refused_before_writing(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(InputError, match="is not writable"):
            surface.save_vtp(tmp_path / "s.vtp", A, B, Z)
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("save", ["h5", "vtp", "html"])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(save, tmp_path, monkeypatch):
    out = tmp_path / f"s.{save}"
    out.write_text("the old file")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if save == "h5":
        monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    else:
        monkeypatch.setattr(Path, "write_text", broken)
    call = {"h5": surface.save_h5, "vtp": surface.save_vtp, "html": plot.interactive}[save]
    with pytest.raises(OSError, match="No space left"):
        call(out, A, B, Z)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    monkeypatch.undo()
    assert out.read_text() == "the old file"


def test_a_symbolic_link_is_written_through(tmp_path):
    (tmp_path / "real.h5").write_text("the old file")
    (tmp_path / "link.h5").symlink_to("real.h5")
    surface.save_h5(tmp_path / "link.h5", A, B, Z)
    assert (tmp_path / "link.h5").is_symlink()
    with h5py.File(tmp_path / "real.h5", "r") as f:
        np.testing.assert_array_equal(f["train_loss"][:], Z)


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        surface.save_vtp(tmp_path / "s.vtp", A, B, Z)
    finally:
        os.umask(old)
    assert (tmp_path / "s.vtp").stat().st_mode & 0o777 == 0o640
