"""``functional-fit lecture``: the table, --json, --out and --data, on the lecture's data."""

import json

import numpy as np
import pytest

import functional_fit as ff
from comparison import lecture
from functional_fit_cli import main
from functional_fit.tolerances import LECTURE_PRINTED, rel_err


@pytest.fixture(scope="module")
def lecture_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("lecture-out")
    with pytest.MonkeyPatch.context() as mp:
        import io
        import sys

        buf = io.StringIO()
        mp.setattr(sys, "stdout", buf)
        assert main(["lecture", "--json", "--out", str(out)]) == 0
    return json.loads(buf.getvalue()), out


def test_json_shape(lecture_json):
    doc, _ = lecture_json
    assert doc["dtype"] == "lecture"
    assert doc["data"] == {"source": "synthetic", "n": 100, "seed": 42, "noise": 0.7, "lecture": True}
    assert list(doc["steps"]) == list(lecture.STEPS)
    for name in ("ols", *lecture.FITS):
        for side in ("jax", "torch"):
            s = doc["steps"][name][side]
            assert isinstance(s["loss"], float) and all(isinstance(v, float) for v in s["params"])
    assert len(doc["steps"]["adam_abs_poly12"]["jax"]["params"]) == 13
    ad = doc["steps"]["autodiff"]
    for side in ("jax", "torch", "hand"):
        assert rel_err(ad[side]["grad"], lecture.PRINTED["autodiff"]["grad"]) < LECTURE_PRINTED
        assert set(ad[side]) == {"value", "grad"}


def test_json_matches_lecture_and_losses_are_full_data_l1(lecture_json, lecture_xy):
    doc, _ = lecture_json
    x, y = lecture_xy
    gd = doc["steps"]["gd_abs_linear"]
    for side in ("jax", "torch"):
        assert rel_err(gd[side]["loss"], lecture.PRINTED["gd_abs_linear"]["loss"]) < LECTURE_PRINTED
        w = np.array(gd[side]["params"])
        assert rel_err(gd[side]["loss"], np.mean(np.abs(w[0] + w[1] * x - y))) < 1e-12
    ols = doc["steps"]["ols"]
    w = np.array(ols["jax"]["params"])
    assert rel_err(ols["jax"]["loss"], np.mean((w[0] + w[1] * x - y) ** 2)) < 1e-12
    # Adam and SGD in lecture mode: float32 parameters, so the two sides agree to float32.
    for name in ("sgd_abs_quad", "adam_abs_quad", "adam_abs_poly12"):
        s = doc["steps"][name]
        assert rel_err(s["jax"]["params"], s["torch"]["params"]) < 1e-5
        assert s["max_abs_diff"] == pytest.approx(
            max(np.max(np.abs(np.subtract(s["jax"][k], s["torch"][k]))) for k in ("params", "loss")))


def test_out_writes_the_same_json(lecture_json):
    doc, out = lecture_json
    assert json.loads((out / "results.json").read_text()) == doc


def test_table(capsys):
    assert main(["lecture", "--n", "30"]) == 0
    text = capsys.readouterr().out
    for name in lecture.STEPS:
        assert name in text
    assert "max |Δ|" in text and "synthetic data (n=30" in text
    assert "lecture printed" in text and "1.208946183" not in text  # not the lecture's data


def test_table_on_lecture_data_shows_printed_values(lecture_xy):
    from functional_fit_cli.lecture import table

    x, y = lecture_xy
    result = lecture.run(x, y, data_meta={"lecture": True}, steps=("autodiff", "gd_abs_linear", "sgd_abs_quad"))
    text = table(result)
    assert "1.208946183" in text  # the lecture's printed GD loss
    assert "0.7305556363 *" in text  # its SGD loss, flagged as another batch order


def test_data_csv_and_float64(tmp_path, capsys):
    x, y = ff.lecture_data(n=25, seed=1)
    path = tmp_path / "d.csv"
    path.write_text("x,y\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(x, y)))
    assert main(["lecture", "--data", str(path), "--dtype", "float64", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["data"]["source"] == "csv" and doc["data"]["n"] == 25
    assert doc["dtype"] == "float64"
    for name in lecture.FITS:
        s = doc["steps"][name]
        assert s["lecture"] is None
        assert rel_err(s["jax"]["params"], s["torch"]["params"]) < 1e-9
    np.testing.assert_allclose(doc["steps"]["ols"]["jax"]["params"], np.polyfit(x, y, 1)[::-1], rtol=1e-12)
