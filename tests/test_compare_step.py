"""compare with the whole torch training step: a scheduler and clip_grad_norm_ on both sides.

A named optimizer's JAX twin carries the schedule of the same name and torch's clipping
(`parity.optim.transformation`, `functional_fit.optim.clip_grad_norm`); a pair is compared as
given, so a pair that leaves the schedule out, or clips as optax does, is caught.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optax
import pytest
import torch

import functional_fit as ff
import parity
from functional_fit import InputError, losses, models, optim

STEP_LR = lambda o: torch.optim.lr_scheduler.StepLR(o, 5, gamma=0.5)  # noqa: E731


@pytest.fixture(scope="module")
def data():
    with ff.float64():
        x, y = ff.lecture_data()
    return x[:, None], y[:, None]


def _run(data, module=None, **kw):
    module = module or parity.models.MLP((1, 8, 1), "tanh", dtype=torch.float64, seed=0)
    with ff.float64():
        return parity.compare(models.mlp, module, *data, jax_loss=losses.mse,
                              torch_loss=parity.losses.mse, steps=30, **kw)


@pytest.mark.parametrize("optimizer, kw", [
    (("SGD", {"lr": 0.1, "momentum": 0.9}), dict(scheduler=STEP_LR, max_norm=0.5)),
    (("Adam", {"lr": 0.01}), dict(scheduler=lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
        o, patience=1))),
    (("AdamW", {"lr": 0.01}), dict(scheduler=lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, 0.05, total_steps=30), max_norm=0.2, norm_type=1.0)),
], ids=["sgd-steplr-clip", "adam-plateau", "adamw-onecycle-clip-l1"])
def test_a_named_optimizer_with_the_rest_of_the_step_agrees(data, optimizer, kw):
    c = _run(data, optimizer=optimizer, **kw)
    assert c.ok and c.culprit == "none", c.table()


def test_a_pair_without_the_schedule_is_caught_where_the_rate_first_changes(data):
    """StepLR halves the rate after 5 steps: a pair whose JAX side has no schedule parts at
    step 6 (the first update at the new rate), blamed on the optimizer."""
    c = _run(data, optimizer=(optim.SGD(lr=0.1, momentum=0.9),
                              lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
             scheduler=STEP_LR)
    assert not c.ok and c.culprit == "optimizer" and c.first_divergence.step == 6


def test_optax_clipping_for_torchs_is_caught_at_the_first_step(data):
    """optax.clip_by_global_norm divides by the norm, torch's clip_grad_norm_ by the norm
    plus 1e-6: a pair that clips the optax way parts at step 1."""
    c = _run(data, optimizer=(optax.chain(optax.clip_by_global_norm(0.05), optim.SGD(lr=0.1)),
                              lambda p: torch.optim.SGD(p, lr=0.1)), max_norm=0.05)
    assert not c.ok and c.culprit == "optimizer" and c.first_divergence.step == 1
    fixed = _run(data, optimizer=(optax.chain(optim.clip_grad_norm(0.05), optim.SGD(lr=0.1)),
                                  lambda p: torch.optim.SGD(p, lr=0.1)), max_norm=0.05)
    assert fixed.ok, fixed.table()


def test_a_frozen_parameter_is_not_in_the_clipped_norm(data):
    """torch's clip_grad_norm_ sees no gradient of a requires_grad=False parameter; JAX's
    twin zeroes it before the norm: the two agree, and clipping did act."""
    module = parity.models.MLP((1, 8, 1), "tanh", dtype=torch.float64, seed=0)
    module[0].weight.requires_grad_(False)
    c = _run(data, module=module, optimizer=("SGD", {"lr": 0.1}), max_norm=0.05)
    free = _run(data, module=module, optimizer=("SGD", {"lr": 0.1}))
    assert c.ok and c.frozen == ("0.weight",), c.table()
    assert abs(c.torch_path["2.weight"][1] - free.torch_path["2.weight"][1]).max() > 1e-6


@pytest.mark.parametrize("kw, message", [
    (dict(scheduler="StepLR"), "scheduler must be a function of the torch optimizer"),
    (dict(scheduler=lambda o: o), "scheduler must return a torch.optim.lr_scheduler"),
    (dict(max_norm=-1.0), "max_norm"),
])
def test_bad_steps_are_refused_in_one_line(data, kw, message):
    with pytest.raises(InputError, match=message):
        _run(data, optimizer=("SGD", {"lr": 0.1}), **kw)


@pytest.mark.parametrize("choice, torch_setting", [(None, "highest"), ("highest", "highest"),
                                                   ("high", "high"), ("medium", "medium")])
def test_matmul_precision_is_set_on_both_sides_reported_and_put_back(data, choice,
                                                                      torch_setting):
    """The report states what each side's float32 products used; torch's setting is put back
    after (on this CPU the products are the same, so the pair agrees whatever the choice)."""
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    c = _run(data, optimizer=("SGD", {"lr": 0.1}), matmul_precision=choice)
    assert c.ok and c.matmul_precision["torch"].startswith(torch_setting)
    assert c.matmul_precision["jax"] == {None: "highest", "highest": "highest", "high": "high",
                                         "medium": "default"}[choice]
    assert f"float32 matrix products: JAX {c.matmul_precision['jax']}" in c.table()
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before
    with pytest.raises(InputError, match="matmul_precision"):
        _run(data, optimizer=("SGD", {"lr": 0.1}), matmul_precision="tf32")


#: Run in a process of its own: torch's testing utilities freeze cudnn's flags for the rest of
#: a process (torch.backends.disable_global_flags(), as torch's optim_db tests do on import).
FROZEN_FLAGS = """
import torch
torch.backends.disable_global_flags()
from comparison.compare import matmul_precisions
before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
for choice in ("high", "highest", "medium"):
    with matmul_precisions(choice) as used:
        inside = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    assert inside == (choice, choice != "highest"), (choice, inside)
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == before
print("ok")
"""


def test_matmul_precision_is_set_when_torchs_global_flags_are_frozen():
    """After torch.backends.disable_global_flags() a direct cudnn flag is refused; compare
    sets it through cudnn's own context manager, and puts everything back."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", FROZEN_FLAGS], cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
