"""The optimizer explorer of the handout page: both frameworks' paths, compared, as page data.

`data(x, y)` runs every path of `functional_fit.explorer` in JAX and in torch
(`parity.explorer`), measures how far apart each pair is, and packs both with the two loss
surfaces into the JSON the page's script (``explorer.js``, beside this file) reads;
`section(doc)` is the page's explorer section with its controls, data and script.

The differences between the frameworks are measured in float64. For drawing, each path is
stored in window units (`pack`): (w - centre) / half-width, times `RESOLUTION`, as int16, so
a step is drawn to 1/8192 of the window's half-width (a few hundredths of a pixel), up to
four half-widths out (beyond, a path is drawn at that edge, off the chart), with -32768 for a
value that is not finite; each path's steps as differences from the step before, zlib-
compressed (the page inflates them with the browser's ``DecompressionStream``). The whole
explorer is about 0.7 MB: a tenth of the float64 paths.
"""

from __future__ import annotations

import base64
import html as _html
import json
import zlib
from importlib import resources

import numpy as np

from functional_fit import explorer as _jax
from functional_fit.tolerances import TRAJECTORY_FLOAT64

#: The most data points the command line computes an explorer for: its 864 paths cost about
#: 2 s at the lecture's 100 points, and grow with the points (a full-batch step reads them all).
MAX_POINTS = 10_000
#: Stored steps per half-width of the window; int16 keeps four half-widths each way.
RESOLUTION = 8192
#: The stored value of a coordinate that is not finite.
NOT_FINITE = -32768
#: The names of the starts, in the order of `functional_fit.explorer.settings`'s.
START_LABELS = ("w = 0 (the lecture's start)", "top left", "bottom right")
LOSS_LABELS = {"l1": "L1 (mean absolute error)", "mse": "MSE (mean squared error)"}


def _b64(a, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=dtype).tobytes()).decode("ascii")


def pack(paths, centre, half) -> str:
    """Paths (..., T+1, 2) in window units as int16, each step's change from the step before
    (wrapping as int16 does, so the page's Int16Array adds them back exactly), zlib, base64.
    """
    u = (np.asarray(paths, np.float64) - centre) / half * RESOLUTION
    q = np.where(np.isfinite(u), np.clip(np.nan_to_num(u), -32767, 32767), NOT_FINITE)
    q = np.round(q).astype(np.int32)
    steps = np.diff(q, axis=-2, prepend=np.zeros_like(q[..., :1, :])).astype(np.int16)
    return base64.b64encode(zlib.compress(steps.tobytes(), 9)).decode("ascii")


def unpack(text: str, shape, centre, half) -> np.ndarray:
    """The paths `pack` stored, float64 (..., T+1, 2) at its resolution; nan where not finite."""
    steps = np.frombuffer(zlib.decompress(base64.b64decode(text)), np.int16).reshape(shape)
    q = np.cumsum(steps.astype(np.int64), axis=-2)
    q = ((q + 32768) % 65536 - 32768).astype(np.int16)  # the int16 wrap the page's sums make
    return np.where(q == NOT_FINITE, np.nan, q / RESOLUTION * half + centre)


def differences(jax_paths, torch_paths) -> np.ndarray:
    """The largest |JAX - torch| over each path's steps, (..., T+1, 2) -> (...): over the
    steps where both are finite; inf for a path whose two versions stop being finite at
    different steps."""
    both = np.isfinite(jax_paths) & np.isfinite(torch_paths)
    diff = np.abs(np.where(both, jax_paths, 0.0) - np.where(both, torch_paths, 0.0))
    same = (np.isfinite(jax_paths) == np.isfinite(torch_paths)).all(axis=(-1, -2))
    return np.where(same, diff.max(axis=(-1, -2)), np.inf)


def data(x, y, *, order_seed: int = 0) -> dict:
    """The explorer's page data for the data (x, y), each (n,): both frameworks' paths.

    Returns:
      A JSON-ready dict: ``optimizers`` (name, label, torch class, learning rates), ``losses``,
      ``starts``, ``steps`` T, the window ``a``, ``b`` (intercept and slope ranges),
      ``surfaces`` (2, G, G) base64 float32, ``jax`` and ``torch`` (O, 2, S, L, T+1, 2) as
      `pack` stores them,
      ``maxdiff`` (O, 2, S, L) base64 float64 (the largest |JAX - torch| of each path, inf
      where one stops being finite before the other), ``relative`` (the same over the larger
      of the path's largest coordinate and the window's half-width), ``divergedAt`` and the
      summary ``agreement``.
    """
    from parity import explorer as _torch

    run = _jax.paths(x, y, order_seed=order_seed)
    s = run.settings
    torch_paths = _torch.paths(x, y, order_seed=order_seed)
    a, b, z = _jax.surfaces(x, y, s.centre, s.half)
    diff = differences(run.paths, torch_paths)  # (O, 2, S, L)
    scale = float(np.abs(s.half).max())
    size = np.nan_to_num(np.abs(run.paths), nan=0.0, posinf=0.0).max(axis=(-1, -2))
    relative = diff / np.maximum(size, scale)  # (O, 2, S, L): to the path's size or the window's
    finite = np.isfinite(diff)
    return {
        "optimizers": [{"name": k, "label": o.label, "lrs": s.lrs[i].tolist(),
                        "torch": _torch.class_name(k)}
                       for i, (k, o) in enumerate(_jax.OPTIMIZERS.items())],
        "losses": [{"name": k, "label": LOSS_LABELS[k]} for k in _jax.LOSSES],
        "starts": s.starts.tolist(), "startLabels": list(START_LABELS),
        "lrCount": int(s.lrs.shape[1]), "steps": int(s.steps), "batchSize": int(s.batch_size),
        "centre": s.centre.tolist(), "scale": scale,
        "a": [float(a[0]), float(a[-1])], "b": [float(b[0]), float(b[-1])], "grid": int(a.size),
        "surfaces": _b64(z, np.float32),
        "half": s.half.tolist(), "resolution": RESOLUTION,
        "jax": pack(run.paths, s.centre, s.half),
        "torch": pack(torch_paths, s.centre, s.half),
        "maxdiff": _b64(diff, np.float64), "relative": _b64(relative, np.float64),
        "divergedAt": run.diverged_at.ravel().tolist(),
        "agreement": {"paths": int(diff.size), "finite_at_the_same_steps": int(finite.sum()),
                      "largest_relative": float(relative[finite].max()) if finite.any()
                      else None,
                      "beyond_rounding": int((relative[finite] > TRAJECTORY_FLOAT64).sum())},
    }


def _select(id_: str, label: str, options) -> str:
    opts = "".join(f'<option value="{i}">{_html.escape(text)}</option>'
                   for i, text in enumerate(options))
    return f'<label>{label} <select id="{id_}">{opts}</select></label>'


def _beyond(agree: dict) -> str:
    """What the page says of the paths that part by more than float64 rounding."""
    n = agree["beyond_rounding"]
    if not n:
        return "Every path agrees to float64 rounding."
    return (f"{n} of them part by more than float64 rounding ({TRAJECTORY_FLOAT64:g} of the "
            "path). The known cause: RMSprop, Adagrad and Adam divide a gradient by its own "
            "size, so a gradient that is 0 in exact arithmetic (the L1 loss on a batch with as "
            "many points above the line as below) but not in the last bit of a sum (JAX's sums "
            "and torch's round it differently) becomes a step; on the lecture's data every such "
            "path is one of these, from w = 0 (tests/test_explorer.py checks it). A path that "
            "bounces about chaotically can also grow a rounding difference.")


def script() -> str:
    """The explorer's script (``explorer.js``), as the page inlines it."""
    return resources.files("comparison").joinpath("explorer.js").read_text(encoding="utf-8")


def section(doc: dict) -> str:
    """The page's explorer: its controls, the canvas, its data and its script, as HTML."""
    esc = _html.escape
    agree = doc["agreement"]
    largest = "" if agree["largest_relative"] is None else f"{agree['largest_relative']:.1e}"
    opts = [o["label"] for o in doc["optimizers"]]
    lrs = doc["optimizers"][0]["lrs"]
    payload = json.dumps(doc, separators=(",", ":")).replace("</", "<\\/")
    return f"""<section class="explorer" id="explorer">
<h2>Explore the optimizers <span class="name">explorer</span></h2>
<p class="settings">The linear model on this page's data, every path computed ahead of time
in one compiled sweep per optimizer (<code>functional_fit.explorer</code>) and again with
<code>torch.optim</code> (<code>parity.explorer</code>): {len(opts)} optimizers, 2 losses,
{len(doc['starts'])} starts, {doc['lrCount']} learning rates each, {doc['steps']} steps
(GD on all the data; the others on batches of {doc['batchSize']} in the seeded order both
frameworks share). Over all {agree['paths']} paths, the largest difference between the two
frameworks, relative to the path's size (or the window's, when larger), is {esc(largest)};
{agree['finite_at_the_same_steps']} of them stay finite at the same steps in both.
{_beyond(agree)}</p>
<div class="ex-controls">
{_select("ex-loss", "loss", [x["label"] for x in doc["losses"]])}
{_select("ex-optimizer", "optimizer", opts)}
{_select("ex-start", "start", doc["startLabels"])}
<label>learning rate <input id="ex-lr" type="range" min="0" max="{len(lrs) - 1}" step="1"
value="{len(lrs) // 2}" aria-describedby="ex-lr-value"> <output id="ex-lr-value"></output></label>
<label>step <input id="ex-step" type="range" min="0" max="{doc['steps']}" step="1"
value="{doc['steps']}"> <output id="ex-step-value"></output></label>
<span class="ex-buttons"><button type="button" id="ex-first" aria-label="first step">first</button>
<button type="button" id="ex-back" aria-label="step back">&#x25C0;</button>
<button type="button" id="ex-forward" aria-label="step forward">&#x25B6;</button>
<button type="button" id="ex-last" aria-label="last step">last</button></span>
<label><input id="ex-torch" type="checkbox" checked> overlay the torch path</label>
</div>
<canvas id="ex-canvas" width="720" height="520" tabindex="0" role="img"
aria-label="the loss's contour plot with the chosen optimizer's path; arrow keys step"></canvas>
<p id="ex-status" class="ex-status" aria-live="polite"></p>
<p id="ex-agree" class="ex-status"></p>
<p class="ex-static">The explorer needs JavaScript; the printed page leaves it out.</p>
<script type="application/json" id="explorer-data">{payload}</script>
<script>{script()}</script>
</section>"""


__all__ = ["LOSS_LABELS", "MAX_POINTS", "NOT_FINITE", "RESOLUTION", "START_LABELS", "data", "differences",
           "pack", "script", "section", "unpack"]
