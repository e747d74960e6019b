"""The lecture as a class handout: one self-contained HTML page, opened from disk.

`html(result, figures_png)` lays out every step of the lecture in order: what it computes, the
torch code beside the JAX code that computed it, both frameworks' results with their largest
difference and (on the lecture's own data) the numbers the lecture printed, and the step's
figures. After the steps, the lecture's torch model beside the jaxpr of its export
(`exported`: ``parity.export.to_jax``, torch.export's core ATen graph run operation by operation
in JAX). ``functional-fit lecture --out DIR`` writes it as ``DIR/index.html``; ``--html FILE``
writes only the page.

The code is read from the packages' own source with `inspect` when the page is built, so it
is the code that ran and cannot drift from it; `CODE` is the one table that says which
functions each step shows, and which figures. It is highlighted by pygments. Everything the
page needs is inside it: the figures as base64 PNG ``data:`` URLs, the CSS (with a print
style sheet) inline, system fonts, its scripts inline: it makes no network request.

Its script (``handout.js``, beside this file) adds what a printed page cannot have: a switch
that shows every step's code as torch, JAX or both side by side (the choice kept in the
browser's local storage, so it survives a reload; print shows both), and the two 3-D loss
surfaces drawn on canvases that turn with the mouse or the arrow keys (`turning_surfaces`; print
keeps the static figures). `comparison.explorer` adds the optimizer explorer. Without
JavaScript the page is today's: both code columns and the figures.
"""

from __future__ import annotations

import base64
import html as _html
import importlib
import inspect
import os
import json
import time
from importlib import resources
from typing import NamedTuple

from functional_fit import registry
from functional_fit.runtime import environment
from comparison.lecture import FITS, STEPS


class Part(NamedTuple):
    """What the page shows for one step of the lecture."""

    title: str  # what the step computes, and the lecture's cells
    torch: tuple  # dotted names of the torch code (parity), shown in this order
    jax: tuple  # dotted names of the JAX code (functional_fit)
    figures: tuple = ()  # names of `comparison.figures.lecture_figures` shown with it


#: Every step of the lecture: the torch code beside the JAX code, and the figures. One table.
CODE = {
    "ols": Part(
        "The analytic least-squares line, in standard units (cells 6-8, 10, 13)",
        ("parity.ols.slope", "parity.ols.intercept", "parity.ols.ols"),
        ("functional_fit.ols.slope", "functional_fit.ols.intercept", "functional_fit.ols.ols"),
        ("ols_fit", "ols_residuals", "mse_surface")),
    "l1_at_zero": Part(
        "The L1 loss of the linear model and its gradient at w = 0 (cells 16, 40-43)",
        ("parity.models.SimpleLinearModel", "parity.losses.l1"),
        ("functional_fit.models.linear", "functional_fit.losses.l1"),
        ("l1_surface",)),
    "autodiff": Part(
        "Automatic differentiation of z(θ) = (1 - log(1 + e^θ))² at θ = 1 (cells 19-29)",
        ("parity.autodiff.z", "parity.autodiff.value_and_grad"),
        ("functional_fit.autodiff.z", "functional_fit.autodiff.value_and_grad")),
    "gd_abs_linear": Part(
        "Gradient descent on the L1 loss, linear model, step lr/(i+1) (cells 49-51)",
        ("parity.fit.gradient_descent", "parity.optim.LectureSGD"),
        ("functional_fit.fit.gradient_descent",),
        ("gd_abs_linear_path", "gd_abs_linear_residuals")),
    "gd_abs_quad": Part(
        "The same on the quadratic model (cells 53-55)",
        ("parity.models.PolynomialModel",),
        ("functional_fit.models.polynomial",),
        ("gd_abs_quad_residuals",)),
    "sgd_abs_quad": Part(
        "Minibatch SGD through a DataLoader, step lr/(epoch+1) (cells 58-61)",
        ("parity.fit.stochastic_gradient_descent", "parity.data.OrderSampler"),
        ("functional_fit.fit.stochastic_gradient_descent", "functional_fit.engine.batches"),
        ("sgd_abs_quad_path",)),
    "adam_abs_quad": Part(
        "Adam on the quadratic model (cell 64)",
        ("parity.fit.adam_sgd",),
        ("functional_fit.fit.adam_sgd",)),
    "adam_abs_poly12": Part(
        "Adam on a degree-12 polynomial (cells 65-66): one loop on each side runs every fit",
        ("parity.fit.train", "parity.fit.train_steps"),
        ("functional_fit.fit.train", "functional_fit.engine.train_steps",
         "functional_fit.engine.step"),
        ("fits", "adam_abs_poly12_pca", "parity")),
}

#: Figures shown before the first step.
INTRO_FIGURES = ("data",)

#: The figures' captions.
CAPTIONS = {
    "data": "The data.",
    "ols_fit": "The analytic MSE line through the data.",
    "ols_residuals": "Residuals of the analytic MSE fit.",
    "mse_surface": "MSE of the linear model around the analytic fit, as a contour and in 3-D.",
    "l1_surface": "L1 loss of the linear model on the same grid.",
    "gd_abs_linear_path": "The GD path on the L1 contour: JAX (white dots) and torch (black "
                          "crosses) on top of each other.",
    "gd_abs_linear_residuals": "Residuals of the GD fit of the L1 loss.",
    "gd_abs_quad_residuals": "Residuals of the quadratic GD fit.",
    "sgd_abs_quad_path": "The SGD path of the quadratic model's three parameters, colored by "
                         "step; torch's as a thin line.",
    "fits": "Every fit; the degree-12 polynomial on a dense grid.",
    "adam_abs_poly12_pca": "The degree-12 Adam path on the L1 surface of its own top two PCA "
                           "directions.",
    "parity": "JAX against torch: the largest parameter difference at every step of every fit.",
}

KEYS = ("value", "grad", "params", "loss")

#: The torch model shown beside the jaxpr of its export, built with its defaults (the
#: lecture's zeros, float32), and the function its forward calls, shown under it.
EXPORTED_MODEL = "parity.models.SimpleLinearModel"
EXPORTED_CALLS = ("parity.models.linear",)
#: The length of the export's example input: tiny, so the export is quick; the jaxpr shows it
#: as the input's shape.
EXAMPLE_POINTS = 4


# --------------------------------------------------------------------------- code


def resolve(name: str):
    """The object a dotted name such as ``"parity.fit.adam_sgd"`` names (module, then attributes)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"handout: cannot resolve {name!r}")


class Source(NamedTuple):
    """The source of one function or class, as it is on disk."""

    name: str  # the dotted name asked for
    file: str  # the file, relative to the package's parent folder
    line: int  # its first line
    code: str  # its source text


def source(name: str) -> Source:
    """The source of `name`, read with `inspect` from the file that defines it."""
    obj = resolve(name)
    obj = inspect.unwrap(obj) if callable(obj) else obj
    lines, start = inspect.getsourcelines(obj)
    path = inspect.getsourcefile(obj) or ""
    root = name.split(".")[0]
    marker = os.sep + root + os.sep
    rel = path[path.rindex(marker) + 1:] if marker in path else os.path.basename(path)
    return Source(name, rel.replace(os.sep, "/"), start, "".join(lines))


def _highlight(code: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    return highlight(code, PythonLexer(), HtmlFormatter(cssclass="hl", wrapcode=True))


def _pygments_css() -> str:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(style="default").get_style_defs(".hl")


# --------------------------------------------------------------------------- the export


class Export(NamedTuple):
    """A torch model and its export, as the page shows them."""

    model: str  # the dotted name of the module's class
    code: tuple  # the dotted names whose source the page shows: the class, then what it calls
    example: str  # the example input, in words: "x: float32 (4,)"
    aten: str  # the core ATen graph that torch.export captured, as Python code
    jaxpr: str  # ``jax.make_jaxpr(fn)(params, x)`` of the JAX function, as text
    ops: tuple  # the ATen operations the JAX function runs


def exported(model: str = EXPORTED_MODEL, calls: tuple = EXPORTED_CALLS,
             n: int = EXAMPLE_POINTS) -> Export:
    """The torch module class `model`, built with its defaults, as a JAX function and its jaxpr.

    ``parity.export.to_jax(module, x)`` on ``x = linspace(-1, 1, n)`` (shape (n,), the
    parameters' dtype) captures the module with torch.export, runs its core ATen graph in JAX
    and checks the function against torch on x; ``jax.make_jaxpr`` traces it on
    ``(params, x)``, params being the module's ``state_dict``. `calls` names the functions
    the module's forward calls, whose source the page shows under the class's.
    """
    import jax
    import torch

    from parity import export as torch_export

    module = resolve(model)()
    dtype = next(module.parameters()).dtype
    x = torch.linspace(-1.0, 1.0, n, dtype=dtype)  # (n,)
    fn, params = torch_export.to_jax(module, x)
    jaxpr = jax.make_jaxpr(fn)(params, x.numpy())
    example = f"x: {str(dtype).removeprefix('torch.')} ({n},)"
    aten = fn.exported.graph_module.code.strip()  # "def forward(self, p_w, x): ..."
    return Export(model, (model, *calls), example, aten, str(jaxpr), tuple(fn.ops))


def _export_section(shown: Export) -> str:
    """The torch model's source beside the jaxpr of its export, the ATen graph under them."""
    esc = _html.escape
    cls = shown.model.rsplit(".", 1)[-1]
    jaxpr = (f'<div class="code" data-side="jax" data-name="jaxpr">'
             f'<div class="where"><code>jax.make_jaxpr(fn)(params, x)</code>'
             f"<span>{esc(shown.example)}</span></div>"
             f'<div class="hl"><pre><code>{esc(shown.jaxpr)}</code></pre></div></div>')
    aten = (f'<div class="code aten" data-name="aten">'
            f'<div class="where"><code>fn.exported.graph_module.code</code>'
            f"<span>the core ATen graph: {esc(', '.join(shown.ops))}</span></div>"
            f"{_highlight(shown.aten)}</div>")
    return (f'<section class="export" id="export" data-model="{esc(shown.model)}">'
            "<h2>The lecture's torch model as a JAX function <span class=\"name\">export</span></h2>"
            f'<p class="settings"><code>fn, params = parity.export.to_jax({esc(cls)}(), x)</code> '
            "captures the torch module with <code>torch.export</code> as its core ATen graph "
            "(below), runs that graph operation by operation in JAX, and checks the function "
            "against torch on x. Its jaxpr is the program JAX traces: a pure function of the "
            "module's <code>state_dict</code> and the input.</p>"
            f'<div class="sidebyside">{_code_column("torch", shown.code)}'
            '<div class="column jax"><h3>JAX — the jaxpr of its export</h3>'
            f"{jaxpr}</div></div>{aten}</section>")


# --------------------------------------------------------------------------- numbers


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return "[" + ", ".join(f"{a:.8g}" for a in v) + "]"
    return f"{v:.10g}"


def _diff(a, b):
    import numpy as np

    if a is None or b is None:
        return None
    return float(np.max(np.abs(np.subtract(np.asarray(a, float), np.asarray(b, float)))))


def _results_table(name: str, step: dict) -> str:
    printed = step.get("lecture") or {}
    keys = [k for k in KEYS if k in step["jax"]]
    show_printed = any(k in printed for k in keys)
    head = '<tr><th></th><th>JAX</th><th>torch</th><th class="diff">|JAX − torch|</th>'
    head += "<th>the lecture printed</th></tr>" if show_printed else "</tr>"
    rows = []
    for k in keys:
        j, t = step["jax"].get(k), (step["torch"] or {}).get(k)
        d = _diff(j, t)
        cells = [f"<th>{k}</th>", f"<td>{_fmt(j)}</td>", f"<td>{_fmt(t)}</td>",
                 f"<td class=\"diff\">{'' if d is None else f'{d:.2e}'}</td>"]
        if show_printed:
            note = _fmt(printed.get(k))
            if note and not printed.get("reproducible", True):
                note += " *"
            cells.append(f"<td>{note}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if "hand" in step:
        h = step["hand"]
        rows.append(f"<tr><th>by hand</th><td colspan=\"2\">value {_fmt(h['value'])}, "
                    f"grad {_fmt(h['grad'])} (the lecture's formula, cell 28)</td>"
                    f"<td></td>{'<td></td>' if show_printed else ''}</tr>")
    out = (f'<table class="results" data-step="{name}"><thead>{head}</thead>'
           f"<tbody>{''.join(rows)}</tbody></table>")
    out += (f'<p class="maxdiff">max |Δ| over every number of the step: '
            f"<strong>{step['max_abs_diff']:.2e}</strong></p>")
    if show_printed and not printed.get("reproducible", True):
        out += ('<p class="note">* The lecture shuffled with an unseeded DataLoader: its number '
                "came from another batch order, so it is shown, not compared.</p>")
    return out


def _settings(name: str) -> str:
    if name not in FITS:
        return ""
    s = FITS[name]
    what = {"gd": f"{s.steps} steps", "sgd": f"{s.epochs} epochs of batch {s.batch_size}",
            "adam": f"{s.epochs} epochs of batch {s.batch_size}"}[s.optimizer]
    model = registry.model(s.model).title(s.degree)  # "linear", "degree-12 polynomial"
    return (f'<p class="settings">{model} model, L1 loss, {s.optimizer.upper()} with lr {s.lr:g}, '
            f"{what}; starts at w = 0.</p>")


def _summary(result, steps) -> str:
    """The steps at a glance: each a link to its section, its loss (or value) on each side and
    their largest difference."""
    rows = []
    for i, name in enumerate(steps, 1):
        step = result.steps[name]
        key = "loss" if "loss" in step["jax"] else "grad" if "grad" in step["jax"] else "value"
        rows.append(
            f'<tr><td><a href="#step-{name}">{i}. {name}</a></td><td>{key}</td>'
            f'<td class="num">{_fmt(step["jax"][key])}</td>'
            f'<td class="num">{_fmt((step["torch"] or {}).get(key))}</td>'
            f'<td class="num">{step["max_abs_diff"]:.2e}</td></tr>')
    return ('<nav class="toc" aria-label="steps"><table class="summary"><thead><tr><th>step</th>'
            "<th></th><th>JAX</th><th>torch</th><th>max |Δ|</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></nav>")


# --------------------------------------------------------------------------- the page


def _figure(name: str, png: bytes) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    caption = _html.escape(CAPTIONS.get(name, name))
    return (f'<figure data-figure="{name}"><img src="data:image/png;base64,{b64}" '
            f'alt="{caption}"><figcaption><code>{name}.png</code> {caption}</figcaption></figure>')


def _code_column(side: str, names) -> str:
    blocks = []
    for name in names:
        src = source(name)
        blocks.append(
            f'<div class="code" data-side="{side}" data-name="{_html.escape(name)}">'
            f'<div class="where"><code>{_html.escape(name)}</code>'
            f'<span>{_html.escape(src.file)}, line {src.line}</span></div>'
            f"{_highlight(src.code)}</div>")
    label = "torch — <code>parity</code>" if side == "torch" else "JAX — <code>functional_fit</code>"
    return f'<div class="column {side}"><h3>{label}</h3>{"".join(blocks)}</div>'


def describe_data(meta: dict) -> str:
    """One sentence on where the data came from, from a `LectureResult`'s ``data``."""
    if meta.get("source") == "csv":
        cols = meta.get("columns") or ["x", "y"]
        dropped = meta.get("dropped") or 0
        text = (f"CSV file {meta.get('path')}: columns {cols[0]} (x) and {cols[1]} (y), "
                f"n = {meta.get('n')}")
        if dropped:
            text += f"; {dropped} row(s) with a missing or non-numeric value dropped"
        return text + "."
    if meta.get("source") == "synthetic":
        which = "The lecture's own data" if meta.get("lecture") else "The lecture's recipe"
        return (f"{which}: y = 1 + 3x − 4x² + noise, n = {meta.get('n')}, seed {meta.get('seed')}, "
                f"noise {meta.get('noise')}, and the outlier (−1.5, 10).")
    return f"Arrays given by the caller, n = {meta.get('n')}."


CSS = """
:root { --ink: #1d2330; --muted: #5b6474; --rule: #d9dde5; --bg: #ffffff; --panel: #f6f7f9;
        --torch: #ee4c2c; --jax: #2f6fdb; }
* { box-sizing: border-box; }
html { font-size: 15px; }
body { margin: 0; color: var(--ink); background: var(--bg); line-height: 1.5;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       "Noto Sans", "DejaVu Sans", sans-serif; }
code, pre, .hl { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas,
                 "DejaVu Sans Mono", "Liberation Mono", monospace; }
main { max-width: 1320px; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
header h1 { font-size: 1.9rem; margin: 0 0 .3rem; letter-spacing: -.01em; }
header p.lead { margin: 0 0 1rem; color: var(--muted); font-size: 1.05rem; max-width: 60rem; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem;
          margin: 0 0 1rem; padding: .8rem 1rem; background: var(--panel); border-radius: 8px;
          font-size: .93rem; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; }
nav.toc { margin: 0; }
section.step, section.export { border-top: 2px solid var(--rule); padding-top: 1.2rem;
                               margin-top: 2rem; }
section.step h2, section.export h2 { font-size: 1.35rem; margin: 0 0 .2rem; }
section.step h2 .name, section.export h2 .name { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono",
                        monospace; font-size: .85em; color: var(--muted); font-weight: 500; }
p.settings { margin: .1rem 0 .8rem; color: var(--muted); }
.sidebyside { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1rem;
              align-items: start; }
.column h3 { font-size: .95rem; margin: 0 0 .4rem; padding-bottom: .2rem;
             border-bottom: 3px solid var(--rule); }
.column.torch h3 { border-color: var(--torch); }
.column.jax h3 { border-color: var(--jax); }
.code { margin: 0 0 .8rem; border: 1px solid var(--rule); border-radius: 6px;
        background: #fbfbfc; overflow: hidden; }
.code .where { display: flex; justify-content: space-between; gap: .5rem; flex-wrap: wrap;
               padding: .25rem .6rem; background: var(--panel); font-size: .8rem;
               color: var(--muted); border-bottom: 1px solid var(--rule); }
.code .where code { color: var(--ink); }
.hl { background: transparent; }
.hl pre { margin: 0; padding: .5rem .6rem; font-size: .8rem; line-height: 1.4;
          overflow-x: auto; background: transparent; }
table.results { border-collapse: collapse; margin: 1rem 0 .3rem; font-size: .88rem;
                font-variant-numeric: tabular-nums; width: 100%; }
table.results th, table.results td { text-align: left; padding: .3rem .6rem;
                                     border-bottom: 1px solid var(--rule); vertical-align: top; }
table.results td { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace;
                   font-size: .82rem; overflow-wrap: anywhere; }
table.results thead th { color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--rule); }
p.maxdiff, p.note { margin: .2rem 0; font-size: .88rem; color: var(--muted); }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1rem;
           margin-top: 1rem; }
figure { margin: 0; background: var(--bg); border: 1px solid var(--rule); border-radius: 8px;
         padding: .5rem; }
figure.wide { grid-column: 1 / -1; }
figure img { display: block; width: 100%; height: auto; }
figcaption { font-size: .85rem; color: var(--muted); margin-top: .3rem; }
.overview { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1.5rem;
            align-items: start; margin: 1rem 0 0; }
.overview .figures { margin-top: 0; grid-template-columns: minmax(0, 1fr); }
table.summary { border-collapse: collapse; width: 100%; font-size: .9rem;
                font-variant-numeric: tabular-nums; }
table.summary th, table.summary td { text-align: left; padding: .3rem .5rem;
                                     border-bottom: 1px solid var(--rule); vertical-align: top; }
table.summary thead th { color: var(--muted); font-weight: 600; border-bottom: 2px solid var(--rule); }
table.summary td.num { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace;
                       font-size: .82rem; white-space: nowrap; }
table.summary a { color: var(--ink); }
table.results th:first-child { width: 6rem; }
table.results .diff { width: 8rem; white-space: nowrap; }
footer { margin-top: 3rem; padding-top: 1rem; border-top: 1px solid var(--rule);
         color: var(--muted); font-size: .85rem; }
.codeview { position: sticky; top: 0; z-index: 5; display: flex; gap: .8rem; align-items: center;
            justify-content: flex-end; padding: .35rem .8rem; margin: 0 -2rem;
            background: rgba(255,255,255,.95);
            border-bottom: 1px solid var(--rule); font-size: .9rem; }
.codeview fieldset { border: none; margin: 0; padding: 0; display: flex; gap: .6rem; }
.codeview legend { float: left; margin-right: .5rem; color: var(--muted); }
html[data-code="torch"] .sidebyside .column.jax, html[data-code="jax"] .sidebyside .column.torch
  { display: none; }
html[data-code="torch"] .sidebyside, html[data-code="jax"] .sidebyside
  { grid-template-columns: minmax(0, 1fr); }
canvas.turn { display: block; margin: .5rem auto 0; max-width: 100%; cursor: grab;
              border: 1px solid var(--rule); border-radius: 6px; background: #fbfbfc; }
canvas.turn:focus, #ex-canvas:focus { outline: 3px solid var(--jax); }
p.turn-hint { text-align: center; margin: .2rem 0 0; font-size: .8rem; color: var(--muted); }
section.explorer { border-top: 2px solid var(--rule); padding-top: 1.2rem; margin-top: 2rem; }
section.explorer h2 { font-size: 1.35rem; margin: 0 0 .2rem; }
section.explorer h2 .name { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono",
                            monospace;
                            font-size: .85em; color: var(--muted); font-weight: 500; }
.ex-controls { display: flex; flex-wrap: wrap; gap: .6rem 1.2rem; align-items: center;
               margin: .6rem 0; font-size: .9rem; }
.ex-controls output { font-family: ui-monospace, Menlo, Consolas, monospace; min-width: 5rem;
                      display: inline-block; }
#ex-canvas { display: block; max-width: 100%; border: 1px solid var(--rule); border-radius: 6px; }
p.ex-status { margin: .3rem 0; font-size: .9rem; }
section.explorer.live p.ex-static { display: none; }
@media (max-width: 900px) {
  main { padding: 1rem; }
  .codeview { margin: 0 -1rem; }
  .sidebyside, .overview { grid-template-columns: minmax(0, 1fr); }
  .figures { grid-template-columns: minmax(0, 1fr); }
}
@media print {
  @page { size: A4; margin: 14mm 12mm; }
  html { font-size: 10pt; }
  main { max-width: none; padding: 0; }
  .overview { display: block; }
  section.step, section.export { break-before: page; margin-top: 0; border-top: none; }
  section.step h2, section.export h2, .column h3, .code .where { break-after: avoid; }
  .sidebyside { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 4mm; }
  .hl pre { white-space: pre-wrap; overflow-wrap: anywhere; overflow: visible; font-size: 6.5pt; }
  .code, figure, table.results { break-inside: avoid; }
  .figures { display: block; }
  figure { border: none; padding: 0; margin: 0 0 4mm; }
  figure img { max-height: 120mm; width: auto; max-width: 100%; margin: 0 auto; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  a { color: inherit; text-decoration: none; }
  .codeview, canvas.turn, p.turn-hint, section.explorer { display: none !important; }
  .sidebyside .column.torch, .sidebyside .column.jax { display: block !important; }
  .sidebyside { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr) !important; }
}
"""


def _header(title: str, result, env: dict, explorer: bool) -> str:
    esc = _html.escape
    play = (' <a href="#explorer">The explorer</a> lets you run six optimizers on the linear '
            "model's surfaces, step by step, in both frameworks." if explorer else "")
    return f"""<header>
<h1>{esc(title)}</h1>
<p class="lead">Every step of the lecture run twice: in torch (the package <code>parity</code>,
written the way torch users write it) and in JAX (<code>functional_fit</code>, pure functions).
Each step shows the code that ran, read from the packages' own source when this page was made,
and what each framework computed; <a href="#export">the last section</a> shows the lecture's
torch model as a JAX function.{play}</p>
<dl class="meta">
<dt>data</dt><dd>{esc(describe_data(result.data))}</dd>
<dt>precision</dt><dd>{esc(result.dtype)}</dd>
<dt>versions</dt><dd>Python {esc(env['python'])}, jax {esc(env['jax'])}, optax {esc(env['optax'])}, torch {esc(env['torch'])}, numpy {esc(env['numpy'])}</dd>
<dt>machine</dt><dd>{esc(env['machine'])}; JAX devices: {esc(env['jax devices'])}</dd>
<dt>made</dt><dd>{esc(time.strftime('%Y-%m-%d %H:%M'))} by <code>functional-fit lecture</code></dd>
</dl>
</header>"""


#: The code view switch: every step's code as torch, JAX, or both side by side.
CODE_VIEWS = ("torch", "both", "jax")
_VIEW_LABELS = {"torch": "torch", "both": "both side by side", "jax": "JAX"}


def _code_switch() -> str:
    radios = "".join(
        f'<label><input type="radio" name="codeview" value="{v}"'
        f'{" checked" if v == "both" else ""}> {_VIEW_LABELS[v]}</label>' for v in CODE_VIEWS)
    return (f'<div class="codeview"><fieldset><legend>code</legend>{radios}</fieldset></div>')


#: The 3-D surfaces that turn: figure name -> the loss of `functional_fit.explorer.LOSSES`.
TURNING = {"mse_surface": "mse", "l1_surface": "l1"}
#: Grid points per side of a turning surface.
TURNING_GRID = 41


def turning_surfaces(x, y, grid: int = TURNING_GRID) -> dict:
    """The data of the page's turning 3-D surfaces: the linear model's MSE and L1 over the
    analytic MSE line's parameters plus or minus 1, the grid of the static figures
    ``mse_surface`` and ``l1_surface``. Figure name -> ``{"grid": G, "z": base64 float32
    (G, G)}``, ``z[j, i]`` at slope j, intercept i."""
    import numpy as np

    from functional_fit import explorer, ols
    from functional_fit.precision import float64

    with float64():
        centre = np.asarray(ols.ols(np.asarray(x, np.float64), np.asarray(y, np.float64)))
    _, _, z = explorer.surfaces(x, y, centre, np.ones(2), points=grid)  # (2, G, G)
    names = list(explorer.LOSSES)
    return {fig: {"grid": grid, "z": base64.b64encode(
        np.ascontiguousarray(z[names.index(loss)], np.float32).tobytes()).decode("ascii")}
        for fig, loss in TURNING.items()}


def _turning(body: str, surfaces: dict) -> str:
    """`body` with a turning canvas after the static image of each figure in `surfaces`."""
    for name in surfaces:
        marker = f'<figure class="wide" data-figure="{name}">'
        at = body.find(marker)
        if at < 0:
            continue
        end = body.index("<figcaption>", at)
        canvas = (f'<canvas class="turn" data-surface="{name}" width="560" height="400" '
                  f'tabindex="0" role="img" aria-label="{name}: drag or use the arrow keys '
                  'to turn it"></canvas><p class="turn-hint">Drag the surface, or focus it '
                  "and use the arrow keys, to turn it.</p>")
        body = body[:end] + canvas + body[end:]
    return body


def script() -> str:
    """The page's own script (``handout.js``), as the page inlines it."""
    return resources.files("comparison").joinpath("handout.js").read_text(encoding="utf-8")


def _steps(result, figures_png: dict) -> list:
    esc = _html.escape
    steps = [name for name in STEPS if name in result.steps]
    intro = [_figure(n, figures_png[n]) for n in INTRO_FIGURES if n in figures_png]
    parts = [f'<div class="overview">{_summary(result, steps)}'
             f'<div class="figures intro">{"".join(intro)}</div></div>']
    for i, name in enumerate(steps, 1):
        part, step = CODE[name], result.steps[name]
        figs = [_figure(n, figures_png[n]) for n in part.figures if n in figures_png]
        figs_html = f'<div class="figures">{"".join(figs)}</div>' if figs else ""
        parts.append(
            f'<section class="step" id="step-{name}" data-step="{name}">'
            f'<h2>{i}. {esc(part.title)} <span class="name">{name}</span></h2>'
            f"{_settings(name)}"
            f'<div class="sidebyside">{_code_column("torch", part.torch)}'
            f'{_code_column("jax", part.jax)}</div>'
            f"{_results_table(name, step)}{figs_html}</section>")
    return parts


def html(result, figures_png: dict, *, title: str = "The gradient-descent lecture in torch "
         "and in JAX", env: dict | None = None, export: Export | None = None,
         explorer: dict | None = None, surfaces: dict | None = None) -> str:
    """The handout page of a lecture run, as one self-contained HTML document.

    Args:
      result: a `comparison.lecture.LectureResult` (both sides run).
      figures_png: figure name -> PNG bytes (`comparison.figures.run_with_figures`, or
        `figures.png` of each `lecture_figures` figure); a figure that is missing is left out.
      title: the page's title.
      env: versions and machine (`environment()` by default).
      export: the torch model and its export shown after the steps (`exported()` by default).
      explorer: `comparison.explorer.data` of the run's data: the optimizer explorer, after
        the steps; None leaves it out.
      surfaces: `turning_surfaces` of the run's data: the 3-D surfaces that turn; None leaves
        them out (the static figures stay).

    Returns:
      The page: UTF-8 HTML with no external reference, every step of `STEPS` that was run in
      order, each a ``<section class="step" id="step-NAME">`` holding a torch and a JAX code
      column, the results table and its figures; then the explorer ``<section
      class="explorer" id="explorer">`` when given; then ``<section class="export"
      id="export">``, the torch model beside the jaxpr of its export.
    """
    from comparison import explorer as page_explorer

    env = environment() if env is None else env
    export = exported() if export is None else export
    esc = _html.escape
    parts = [_code_switch(), _header(title, result, env, explorer is not None),
             *_steps(result, figures_png)]
    if explorer is not None:
        parts.append(page_explorer.section(explorer))
    parts.append(_export_section(export))
    parts.append('<footer>Made by <code>functional-fit lecture</code> '
                 "(<code>comparison.handout</code>). The page is self-contained: it "
                 "loads nothing from the network.</footer>")
    body = "\n".join(parts)
    wide = ("mse_surface", "l1_surface")  # two panels side by side: give them the full width
    for n in wide:
        body = body.replace(f'<figure data-figure="{n}">', f'<figure class="wide" data-figure="{n}">')
    body = _turning(body, surfaces or {})
    data = json.dumps(surfaces or {}, separators=(",", ":"))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}
{_pygments_css()}
</style>
</head>
<body>
<main>
{body}
</main>
<script type="application/json" id="surfaces-data">{data}</script>
<script>{script()}</script>
</body>
</html>
"""


def write(path, result, figures_png: dict, **kwargs) -> None:
    """Write `html(result, figures_png)` to `path` in UTF-8 (the command line writes it into
    a temporary file and renames it: `functional_fit_cli.files.atomic_path`)."""
    page = html(result, figures_png, **kwargs)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)


__all__ = ["CODE", "CODE_VIEWS", "Export", "Part", "Source", "TURNING", "describe_data",
           "environment", "exported", "html", "resolve", "script", "source",
           "turning_surfaces", "write"]
