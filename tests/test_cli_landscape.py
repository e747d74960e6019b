"""``functional-fit surface --model FILE.py:NAME``: a network's landscape from the command line.

References: the library called directly on the same plane (the command is a thin layer), torch
itself for the loss at the checkpoint, numpy for a JAX function's loss, the dense Hessian's
``eigh`` for the eigenvalues, and h5py and VTK reading the files back.
"""

from __future__ import annotations

import os
import sys
import textwrap
import zipfile

import jax
import numpy as np
import pytest
import torch

from functional_fit import losses, streams, surface
from functional_fit.streams import Stream
from functional_fit.surface import flatten
from functional_fit_cli import main
from functional_fit_cli.landscape import npz_arrays
from parity import export

NET = textwrap.dedent('''
    import jax.numpy as jnp
    import torch


    class CNN(torch.nn.Module):
        """A tiny CNN of 8x8 images, 3 classes, with BatchNorm and dropout."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1, stride=2)
            self.bn = torch.nn.BatchNorm2d(2)
            self.drop = torch.nn.Dropout(0.5)
            self.fc = torch.nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            h = torch.relu(self.bn(self.conv(x)))  # (n, 2, 4, 4)
            return self.fc(self.drop(h.flatten(1)))


    def make():
        return CNN()


    class Wrong(torch.nn.Module):
        """A module whose forward fails on the data: torch.export's error."""

        def forward(self, x):
            return torch.nn.functional.linear(x.flatten(1), torch.ones(3, 5))


    def mlp(params, x):
        return jnp.tanh(x @ params["w1"].T + params["b1"][None, :]) @ params["w2"].T
''')


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """net.py, an image dataset (.npz), two checkpoints of the CNN (.pt), a regression dataset
    and an MLP checkpoint (.npz)."""
    d = tmp_path_factory.mktemp("landscape")
    (d / "net.py").write_text(NET)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 1, 8, 8))  # (20, 1, 8, 8) float64
    y = rng.integers(0, 3, 20)  # (20,) labels
    np.savez(d / "images.npz", x=x, y=y)
    sys.path.insert(0, str(d))
    try:
        import net  # the file the command imports
    finally:
        sys.path.remove(str(d))
    module = net.make().double()
    with torch.no_grad():
        module.bn.running_mean.copy_(torch.tensor([0.1, -0.2]))
        module.bn.running_var.copy_(torch.tensor([0.5, 2.0]))
    torch.save(module.state_dict(), d / "a.pt")
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.sin(torch.arange(p.numel(), dtype=p.dtype)).reshape(p.shape) * 0.3)
    torch.save(module.state_dict(), d / "b.pt")
    xr = rng.standard_normal((30, 2))  # (30, 2)
    np.savez(d / "reg.npz", x=xr, y=np.sin(xr[:, :1]))
    np.savez(d / "mlp.npz", w1=rng.standard_normal((3, 2)), b1=rng.standard_normal(3),
             w2=rng.standard_normal((1, 3)))
    return d, net, x, y, xr


def _module(net, path, mode="eval"):
    module = net.make().double()
    module.load_state_dict(torch.load(path, weights_only=True))
    if mode == "eval":
        return module.eval()
    module.train()
    module.drop.eval()
    return module


def _twin(net, x, path, mode="eval"):
    """(model, params, state) of the CNN at checkpoint `path`, exported as the command says."""
    module = _module(net, path, mode)
    fn, params = export.to_jax(module, torch.from_numpy(x[:8]))
    return export.as_model(fn, params)


def _cli(*argv) -> int:
    return main(["surface", *map(str, argv)])


def test_a_cnn_surface_is_the_library_surface_on_the_same_plane(files, tmp_path, capsys):
    d, net, x, y, _ = files
    out = tmp_path / "s.npz"
    assert _cli("--model", d / "net.py:make", "--checkpoint", d / "a.pt", "--data",
                d / "images.npz", "--loss", "cross_entropy", "--grid", "3x3",
                "--direction-seed", 3, "--out", out) == 0
    said = capsys.readouterr().out
    assert "9 forward passes over the 20 data points (1 batch): about" in said
    model, params, state = _twin(net, x, d / "a.pt")
    assert state is None  # eval mode: the running statistics are constants of the model
    a = b = np.linspace(-1, 1, 3)
    plane = surface.random_plane(params, seed=3)
    z = surface.loss_surface(model, losses.cross_entropy, x, y, a, b, plane=plane)
    saved = np.load(out)
    np.testing.assert_array_equal(saved["losses"], z)
    np.testing.assert_array_equal(saved["u"], flatten(plane.u)[0])
    with torch.no_grad():  # the centre is the checkpoint: torch's own loss there
        at = torch.nn.functional.cross_entropy(_module(net, d / "a.pt")(torch.from_numpy(x)),
                                               torch.from_numpy(y))
    assert abs(saved["losses"][1, 1] - at.item()) < 1e-12


def test_batches_give_the_surface_of_the_whole_data(files, tmp_path):
    d, *_ = files
    argv = ["--model", d / "net.py:make", "--checkpoint", d / "a.pt", "--data", d / "images.npz",
            "--loss", "cross_entropy", "--grid", "3x3"]
    assert _cli(*argv, "--out", tmp_path / "whole.npz") == 0
    assert _cli(*argv, "--batch-size", 6, "--out", tmp_path / "batches.npz") == 0  # 6+6+6+2
    whole, batches = (np.load(tmp_path / f)["losses"] for f in ("whole.npz", "batches.npz"))
    np.testing.assert_allclose(batches, whole, rtol=1e-13)


def test_batch_norm_recomputed_is_training_mode_with_dropout_off(files, tmp_path):
    d, net, x, y, _ = files
    out = tmp_path / "s.npz"
    assert _cli("--model", d / "net.py:make", "--checkpoint", d / "a.pt", "--data",
                d / "images.npz", "--loss", "cross_entropy", "--grid", "3x3", "--batch-norm",
                "recompute", "--out", out) == 0
    model, params, state = _twin(net, x, d / "a.pt", mode="train")
    assert state is not None  # stateful: model(params, state, x) -> (y, new_state)
    a = b = np.linspace(-1, 1, 3)
    z = surface.loss_surface(model, losses.cross_entropy, x, y, a, b,
                             plane=surface.random_plane(params, seed=0), state=state)
    saved = np.load(out)["losses"]
    np.testing.assert_array_equal(saved, z)
    with torch.no_grad():  # torch in training mode: the batch's own statistics
        at = torch.nn.functional.cross_entropy(
            _module(net, d / "a.pt", "train")(torch.from_numpy(x)), torch.from_numpy(y))
    assert abs(saved[1, 1] - at.item()) < 1e-12


def test_interpolate_is_the_library_line_between_the_checkpoints(files, tmp_path, capsys):
    d, net, x, y, _ = files
    out, h5 = tmp_path / "line.npz", tmp_path / "line.h5"
    assert _cli("--model", d / "net.py:make", "--checkpoint", d / "a.pt", "--checkpoint",
                d / "b.pt", "--interpolate", "--alphas=-0.5:1.5:5", "--data", d / "images.npz",
                "--loss", "cross_entropy", "--batch-size", 8, "--out", out, "--h5", h5,
                "--plot", tmp_path / "line.png") == 0
    assert "7 forward passes" in capsys.readouterr().out  # 5 alphas and the two ends
    model, start, _ = _twin(net, x, d / "a.pt")
    end = export.as_model(*export.to_jax(_module(net, d / "b.pt"), torch.from_numpy(x[:8])))[1]
    line = surface.interpolate(model, losses.cross_entropy, x, y, start, end,
                               np.linspace(-0.5, 1.5, 5))
    saved = np.load(out)
    np.testing.assert_allclose(saved["losses"], line.losses, rtol=1e-13)
    assert abs(float(saved["barrier"]) - line.barrier) < 1e-12
    for alpha, path in ((0, "a.pt"), (1, "b.pt")):  # the ends: torch at each checkpoint
        with torch.no_grad():  # (both hold the same running statistics)
            at = torch.nn.functional.cross_entropy(_module(net, d / path)(torch.from_numpy(x)),
                                                   torch.from_numpy(y)).item()
        assert abs(saved["ends"][alpha][1] - at) < 1e-12
    import h5py

    with h5py.File(h5, "r") as f:
        assert sorted(f) == ["train_loss", "xcoordinates"]
        np.testing.assert_array_equal(f["train_loss"][()], saved["losses"])


def test_a_jax_function_with_an_npz_checkpoint(files, tmp_path):
    d, net, *_, xr = files
    out = tmp_path / "s.npz"
    assert _cli("--model", d / "net.py:mlp", "--checkpoint", d / "mlp.npz", "--data",
                d / "reg.npz", "--grid", "3x3", "--range=-2:2,-1:1", "--out", out) == 0
    held = dict(np.load(d / "mlp.npz"))

    plane = surface.random_plane({k: jax.numpy.asarray(v) for k, v in held.items()}, seed=0)
    a, b = np.linspace(-2, 2, 3), np.linspace(-1, 1, 3)
    yr = np.sin(xr[:, :1])
    z = surface.loss_surface(net.mlp, losses.mse, xr, yr, a, b, plane=plane)
    saved = np.load(out)["losses"]
    np.testing.assert_array_equal(saved, z)
    by_hand = np.tanh(xr @ held["w1"].T + held["b1"]) @ held["w2"].T  # numpy, at the centre
    assert abs(saved[1, 1] - np.mean((by_hand - yr) ** 2)) < 1e-13


def test_the_surface_files_read_back(files, tmp_path):
    d, *_ = files
    paths = {k: tmp_path / f"s.{k}" for k in ("npz", "h5", "vtp", "html")}
    assert _cli("--model", d / "net.py:make", "--checkpoint", d / "a.pt", "--data",
                d / "images.npz", "--loss", "cross_entropy", "--grid", "3x3", "--out",
                paths["npz"], "--h5", paths["h5"], "--vtp", paths["vtp"], "--html",
                paths["html"]) == 0
    z = np.load(paths["npz"])["losses"]  # (3, 3)
    import h5py
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    with h5py.File(paths["h5"], "r") as f:
        assert sorted(f) == ["train_loss", "xcoordinates", "ycoordinates"]
        np.testing.assert_array_equal(f["train_loss"][()], z)
        np.testing.assert_array_equal(f["xcoordinates"][()], np.linspace(-1, 1, 3))
    reader = vtk.vtkXMLPolyDataReader()
    reader.SetFileName(str(paths["vtp"]))
    reader.Update()
    points = vtk_to_numpy(reader.GetOutput().GetPoints().GetData())  # (9, 3)
    np.testing.assert_array_equal(points[:, 2], z.reshape(-1))
    page = paths["html"].read_text()
    assert page.startswith("<") and "plotly" in page and "<script src=" not in page


def test_a_lecture_model_writes_the_surface_files_too(tmp_path):
    h5, html = tmp_path / "s.h5", tmp_path / "s.html"
    assert _cli("--grid", "4x3", "--steps", 5, "--out", tmp_path / "s.npz", "--h5", h5,
                "--html", html) == 0
    import h5py

    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(f["train_loss"][()], np.load(tmp_path / "s.npz")["losses"])
    assert "GD path" in html.read_text()


def test_npz_members_stored_uncompressed_are_memory_mapped(tmp_path):
    x, y = np.arange(24.0).reshape(4, 2, 3), np.array([1, 0, 2, 1])
    np.savez(tmp_path / "plain.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "small.npz", x=x, y=y)
    plain = npz_arrays(str(tmp_path / "plain.npz"), ("x", "y"))
    small = npz_arrays(str(tmp_path / "small.npz"), ("x", "y"))
    assert all(isinstance(a, np.memmap) for a in plain.values())
    assert not any(isinstance(a, np.memmap) for a in small.values())
    for got in (plain, small):
        np.testing.assert_array_equal(got["x"], x)
        np.testing.assert_array_equal(got["y"], y)
    with zipfile.ZipFile(tmp_path / "plain.npz") as z:  # and it maps the stored member
        assert z.getinfo("x.npy").compress_type == zipfile.ZIP_STORED
    fortran = np.asfortranarray(x.reshape(4, 6))
    np.savez(tmp_path / "f.npz", x=fortran, y=y)
    np.testing.assert_array_equal(npz_arrays(str(tmp_path / "f.npz"), ("x",))["x"], fortran)


def _dense(model, loss, x, y, params):
    """The dense Hessian's eigenvalues (descending) and eigenvectors as pytrees."""
    vector, unravel = flatten(params)
    h = jax.hessian(lambda w: loss(model(unravel(w), x), y))(vector)  # (p, p)
    values, vectors = np.linalg.eigh(np.asarray(h))
    order = np.argsort(values)[::-1]
    return values[order], [unravel(vectors[:, i]) for i in order]


def test_hessian_eigenvalues_and_the_plane_of_the_top_two(files, tmp_path, capsys):
    d, net, *_, xr = files
    out = tmp_path / "s.npz"
    assert _cli("--model", d / "net.py:mlp", "--checkpoint", d / "mlp.npz", "--data",
                d / "reg.npz", "--grid", "3x3", "--directions", "hessian", "--hessian", 3,
                "--out", out) == 0
    said = capsys.readouterr().out
    params = {k: jax.numpy.asarray(v) for k, v in np.load(d / "mlp.npz").items()}
    yr = np.sin(xr[:, :1])
    values, vectors = _dense(net.mlp, losses.mse, xr, yr, params)
    saved = np.load(out)
    np.testing.assert_allclose(saved["eigenvalues"], values[:3], rtol=1e-8)
    assert "9 forward passes over the 30 data points (1 batch) and at most 24 Hessian-vector " \
        "products" in said  # 12 parameters: Lanczos' bound, twice
    assert "top 3 Hessian eigenvalues: " in said
    for name, vector in (("u", vectors[0]), ("v", vectors[1])):  # up to sign
        flat = np.asarray(flatten(vector)[0])
        assert abs(abs(saved[name] @ flat) - 1) < 1e-8
    plane = surface.Plane(params, *(flatten(params)[1](saved[k]) for k in ("u", "v")))
    z = surface.loss_surface(net.mlp, losses.mse, xr, yr, np.linspace(-1, 1, 3),
                             np.linspace(-1, 1, 3), plane=plane)
    np.testing.assert_allclose(saved["losses"], z, rtol=1e-13)


A_PT = ["--checkpoint", "{d}/a.pt"]


@pytest.mark.parametrize("argv, says", [
    (["--checkpoint", "{d}/none.pt"], "--checkpoint {d}/none.pt: no such file"),
    (["--model", "{d}/net.py:nope", *A_PT], "defines no 'nope'"),
    (["--data", "{d}/mlp.npz", *A_PT], "holds no array 'x'"),
    (["--interpolate", *A_PT], "--interpolate needs two --checkpoint files (start and end), "
     "got 1"),
    ([*A_PT, "--checkpoint", "{d}/b.pt"], "--checkpoint: a surface takes one, got 2"),
    (["--directions", "pca"], "--directions must be one of"),
    (["--steps", "5"], "--steps applies to the lecture's models"),
    (["--alphas", "0:1:3"], "--alphas applies to --interpolate"),
    (["--model", "{d}/net.py:mlp"], "--checkpoint FILE"),
    (["--checkpoint", "{d}/mlp.npz"], "--checkpoint {d}/mlp.npz does not fit the module"),
    (["--model", "{d}/net.py:Wrong"], "--model {d}/net.py:Wrong: parity.export.to_jax failed"),
    (["--h5", "{d}/no/s.h5"], "does not exist"),
    (["--checkpoint", "{d}/a.pt", "--vtp", "{d}/a.pt"], "--vtp '{d}/a.pt' would overwrite the "
     "input --checkpoint '{d}/a.pt'"),
])
def test_bad_network_options_are_one_line_and_write_nothing(files, tmp_path, capsys, argv,
                                                            says):
    d, *_ = files
    given = [a.format(d=d) for a in argv]
    if "--model" not in given:
        given += ["--model", f"{d}/net.py:make"]
    if "--data" not in given:
        given += ["--data", f"{d}/images.npz"]
    try:
        status = _cli(*given, "--grid", "3x3", "--loss", "cross_entropy", "--out",
                      tmp_path / "s.npz", "--html", tmp_path / "s.html")
    except SystemExit as exc:  # the parser's: an output path
        status = exc.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert says.format(d=d) in err
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_h5_folder_is_refused_before_any_work(files, tmp_path, monkeypatch,
                                                             capsys):
    d, *_ = files
    (tmp_path / "ro").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False
                        if str(p) == str(tmp_path / "ro") else real(p, mode, **kw))
    with pytest.raises(SystemExit) as exc:
        _cli("--model", d / "net.py:make", "--data", d / "images.npz", "--grid", "3x3",
             "--out", tmp_path / "s.npz", "--h5", tmp_path / "ro" / "s.h5")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"folder '{tmp_path / 'ro'}' is not writable" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["ro"]


def test_network_options_are_refused_for_the_lecture_models(capsys):
    assert _cli("--grid", "3x3", "--batch-size", 4) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("functional-fit surface: error: --batch-size applies to a network "
                   "(--model FILE.py:NAME), not to --model linear")


def test_a_mesh_needs_two_points_a_side_before_any_work(tmp_path, capsys):
    assert _cli("--grid", "5x1", "--out", tmp_path / "s.npz", "--vtp", tmp_path / "s.vtp") == 2
    assert capsys.readouterr().err.strip() == ("functional-fit surface: error: --vtp draws a "
                                               "mesh: give --grid at least 2x2, not 5x1")
    assert list(tmp_path.iterdir()) == []


def test_a_stream_from_the_command_line_reads_the_memmap(files, monkeypatch):
    """--batch-size hands loss_surface a Stream over the memory-mapped arrays."""
    d, *_ = files
    seen, made = [], []
    real = surface.loss_surface

    def spy(model, loss, x, y, *args, **kwargs):
        seen.append((x, y))
        return real(model, loss, x, y, *args, **kwargs)

    class Recorded(Stream):
        def __init__(self, x, y=None, **kwargs):
            made.append((x, y))
            super().__init__(x, y, **kwargs)

    monkeypatch.setattr(surface, "loss_surface", spy)
    monkeypatch.setattr(streams, "Stream", Recorded)
    assert _cli("--model", f"{d}/net.py:make", "--data", f"{d}/images.npz", "--loss",
                "cross_entropy", "--grid", "2x2", "--batch-size", 8) == 0
    (x, y), = seen
    assert isinstance(x, Stream) and y is None and x.batch_size == 8 and x.n == 20
    (xs, ys), = made
    assert isinstance(xs, np.memmap) and isinstance(ys, np.memmap)
