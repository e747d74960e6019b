"""Property: for a drawn optimizer, keywords and problem, functional_fit.optim's path is torch's.

Hypothesis draws the optimizer, each of its keywords (left at torch's default or drawn), an
optional clip_grad_norm, the problem (the lecture's linear or quadratic model, or a tanh
network of 2 to 8 hidden units from a drawn start), full batch or minibatches of any size
(short last batches included), the number of steps and the dtype.

The domain is where agreement is guaranteed (see tests/test_optim.py): learning rates small
enough that no run reaches the stretch where an adaptive optimizer hops around an optimum at
a constant step and rounding picks the direction; second-moment decays (beta2, alpha, rho) of
0.9 and more, 0.99 for the Adam family: a short-memory normalizer divides a gradient component
that passes through 0 by little more than itself, and turns that component's rounding (relative
to the terms of its sum, not to the small result) into a step of order lr (found here:
Adamax(betas=(0.5, 0.9)) on the network parts from torch by 4.5e-8 within 130 steps, growing
from 1e-15 at step 77); centered RMSprop on minibatches only (its variance estimate is tiny, and
its rounding amplified, on a full batch's smooth gradients).

Profiles (conftest.py): ``ci`` (default, 12 derandomized examples) and ``thorough``:
    HYPOTHESIS_PROFILE=thorough pytest tests/test_optim_property.py
"""

from __future__ import annotations

import itertools
import math

import jax
import numpy as np
import optax
import torch
from hypothesis import HealthCheck, event, given, note, settings, strategies as st

import functional_fit as ff
import functional_fit.optim as fo
from functional_fit.tolerances import (
    OPTIM_GROWTH_FLOAT64,
    OPTIMIZER_ROUNDINGS,
    ROUNDINGS_PER_STEP,
    TRAJECTORY_FLOAT64,
    UNIT_ROUNDOFF,
    rel_err,
)

from _paths import flat, growth, jax_train, torch_train
from comparison.problems import make

N = 100

#: log10 of the learning-rate range per optimizer: each one's steady step is about lr (the
#: Adam family, RMSprop, Adagrad early on) or lr * |g| (SGD), so the ranges differ.
LOG_LR = {"SGD": (-3.0, -1.5), "Adam": (-4.0, -2.5), "AdamW": (-4.0, -2.5),
          "RMSprop": (-4.0, -3.0), "Adagrad": (-3.0, -2.0), "Adamax": (-4.0, -2.5),
          "NAdam": (-4.0, -2.5), "RAdam": (-4.0, -2.5), "Adadelta": (-2.0, -1.0),
          "Rprop": (-4.0, -2.0), "ASGD": (-3.0, -1.5), "Adafactor": (-4.0, -2.0)}


@st.composite
def keywords(draw, name: str, minibatch: bool) -> dict:
    """Each keyword of optimizer `name` at its default or drawn, in the valid domain."""
    kw = {"lr": 10.0 ** draw(st.floats(*LOG_LR[name]), label="log10 lr")}

    def maybe(key, strategy):
        if draw(st.booleans(), label=f"set {key}"):
            kw[key] = draw(strategy, label=key)

    if name != "Rprop":  # torch's Rprop has no weight decay
        maybe("weight_decay", st.floats(0.0, 0.05))
    maybe("maximize", st.booleans())
    if name == "SGD":
        maybe("momentum", st.floats(0.0, 0.95))
        maybe("dampening", st.floats(0.0, 0.5))
        if kw.get("momentum", 0) > 0 and kw.get("dampening", 0) == 0:
            maybe("nesterov", st.booleans())
    if name in ("Adam", "AdamW", "Adamax", "NAdam", "RAdam"):
        maybe("betas", st.tuples(st.floats(0.5, 0.95), st.floats(0.99, 0.9999)))
        maybe("eps", st.floats(-10.0, -5.0).map(lambda e: 10.0**e))
    if name in ("Adam", "AdamW"):
        maybe("amsgrad", st.booleans())
    if name in ("Adam", "NAdam", "RAdam"):
        maybe("decoupled_weight_decay", st.booleans())
    if name == "NAdam":
        maybe("momentum_decay", st.floats(0.0, 0.01))
    if name == "RMSprop":
        maybe("alpha", st.floats(0.9, 0.999))
        maybe("eps", st.floats(-10.0, -5.0).map(lambda e: 10.0**e))
        maybe("momentum", st.floats(0.0, 0.9))
        if minibatch:
            maybe("centered", st.booleans())
    if name == "Adagrad":
        maybe("lr_decay", st.floats(0.0, 0.01))
        maybe("initial_accumulator_value", st.floats(0.0, 0.5))
        maybe("eps", st.floats(-12.0, -6.0).map(lambda e: 10.0**e))
    if name == "Adadelta":
        maybe("rho", st.floats(0.9, 0.99))
        maybe("eps", st.floats(-8.0, -4.0).map(lambda e: 10.0**e))
    if name == "Rprop":
        maybe("etas", st.tuples(st.floats(0.3, 0.7), st.floats(1.1, 1.5)))
        maybe("step_sizes", st.tuples(st.floats(1e-7, 1e-5), st.floats(0.5, 50.0)))
    if name == "ASGD":
        maybe("lambd", st.floats(0.0, 1e-2))
        maybe("alpha", st.floats(0.5, 1.0))
        maybe("t0", st.floats(0.0, 300.0))
    if name == "Adafactor":
        maybe("beta2_decay", st.floats(-1.0, -0.5))
        maybe("eps", st.tuples(st.one_of(st.none(), st.floats(1e-30, 1e-10)),
                               st.floats(1e-4, 1e-2)))
        maybe("d", st.floats(1.0, 2.0))
    return kw


#: Drawn among every optimizer but three with tables of their own, whose torch side needs what
#: these problems do not have: Muon takes 2-D parameters only (tests/test_optim_muon_sparse.py),
#: torch's SparseAdam sparse gradients (the same file), and LBFGS iterates each step to
#: convergence, where rounding decides its stopping tests (tests/test_optim_lbfgs.py); all
#: three also run optim_db's keyword sets (tests/test_optim_db.py).
OWN_TABLES = ("Muon", "SparseAdam", "LBFGS")
DRAWN = [name for name in fo.OPTIMIZERS if name not in OWN_TABLES]


def test_every_other_optimizer_is_drawn():
    assert set(DRAWN) == set(LOG_LR) and set(DRAWN) | set(OWN_TABLES) == set(fo.OPTIMIZERS)


@st.composite
def runs(draw):
    name = draw(st.sampled_from(DRAWN), label="optimizer")
    problem = draw(st.sampled_from(["linear", "poly2", "mlp"]), label="problem")
    # Adafactor on the network's full-batch gradients reaches a chaotic stretch within a few
    # hundred steps (torch against itself parts by 1e-3: tests/test_optim.py), so minibatches.
    full = st.none() if name != "Adafactor" or problem != "mlp" else st.nothing()
    batch_size = draw(st.one_of(full, st.integers(5, 40)), label="batch size")
    kw = draw(keywords(name, batch_size is not None))
    clip = draw(st.one_of(st.none(), st.tuples(st.floats(0.5, 5.0),
                                               st.sampled_from([1.0, 2.0, math.inf]))),
                label="clip")
    # Rprop's step is -sign(g) * step_size: in float32, a gradient element at its rounding
    # level takes either sign, and the paths part by a whole step size (measured: 1e-5).
    dtype = draw(st.sampled_from(["float64"] if name == "Rprop" else ["float64", "float32"]),
                 label="dtype")
    steps = draw(st.integers(20, 300 if dtype == "float64" else 150), label="steps")
    hidden = draw(st.integers(2, 8), label="hidden")
    seed = draw(st.integers(0, 2**16), label="seed")
    return dict(name=name, problem=problem, batch_size=batch_size, kw=kw, clip=clip,
                dtype=dtype, steps=steps, hidden=hidden, seed=seed)


_EXAMPLES = itertools.count(1)


def _bounded_compile_cache():
    """Every example compiles a new program; drop them every 100 examples (as
    tests/test_property_parity.py does) so that the thorough profile does not run out."""
    if next(_EXAMPLES) % 100 == 0:
        jax.clear_caches()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=runs())
def test_drawn_optimizer_paths_agree(run):
    _bounded_compile_cache()
    note(str(run))
    event(run["name"])
    kw, steps = run["kw"], run["steps"]
    pb = make(run["problem"], run["dtype"], maximize=kw.get("maximize", False),
              hidden=run["hidden"], seed=run["seed"])
    if run["batch_size"] is None:
        batching = dict(steps=steps)
    else:
        epochs = -(-steps // math.ceil(N / run["batch_size"]))
        batching = dict(order=ff.batch_order(N, epochs, seed=run["seed"]),
                        batch_size=run["batch_size"])
    tx = fo.OPTIMIZERS[run["name"]](**kw)
    if run["clip"]:
        tx = optax.chain(fo.clip_grad_norm(*run["clip"]), tx)
    jpath = jax_train(pb.params, pb.x, pb.y, model=pb.model, loss=pb.loss, optimizer=tx,
                      **batching)
    opt = getattr(torch.optim, run["name"])(pb.module.parameters(), **kw)
    tpath = torch_train(pb.module, pb.loss_fn, *map(torch.from_numpy, (pb.x, pb.y)),
                        optimizer=opt, clip=run["clip"], **batching)
    a, b = flat(jpath), flat(tpath)
    assert a.shape == b.shape and a.shape[0] >= steps + 1  # compared every step, not a prefix
    g = growth(jpath, tpath)
    if run["dtype"] == "float64":
        assert rel_err(a, b) <= TRAJECTORY_FLOAT64
        assert np.all(g <= OPTIM_GROWTH_FLOAT64 * np.maximum(np.arange(g.size), 1))
    else:  # OPTIM_TRAJECTORY_FLOAT32's derivation, for this run's length
        bound = (a.shape[0] - 1) * (ROUNDINGS_PER_STEP + OPTIMIZER_ROUNDINGS) * UNIT_ROUNDOFF[
            "float32"]
        assert rel_err(a, b) <= bound
