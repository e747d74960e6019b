"""The sweep figure: final loss against learning rate, one line per optimizer or seed.

matplotlib's object API (`matplotlib.figure.Figure`), as `functional_fit.plot`: no pyplot
state. matplotlib is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import numpy as np

from functional_fit._io import atomic_path
from functional_fit.sweep import NO_SEED, SweepResult


def plot_sweep(results, ax=None, *, title: str | None = None):
    """Draw final loss vs learning rate (log x) on `ax`; diverged runs as red crosses on top.

    Args:
      results: a `SweepResult`, or a dict {label: SweepResult} (one per optimizer, say). Each
        result gives one line per (seed, start); a dict prefixes the lines with its labels.
      ax: a matplotlib Axes; a new figure when None.
      title: the axes' title.

    Returns:
      The Axes. Diverged runs have no finite loss to plot: they are marked with an ``x`` at
      the top of the axes (at their learning rate), labelled "diverged".
    """
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(7, 4.5)).add_subplot()
    if isinstance(results, SweepResult):
        results = {"": results}
    diverged_lrs = []
    for label, res in results.items():
        lr, seed, init = (np.asarray(a) for a in (res.lr, res.seed, res.init))
        loss = np.asarray(res.loss, dtype=np.float64)
        bad = np.asarray(res.diverged)
        diverged_lrs.extend(lr[bad].tolist())
        keys = sorted(set(zip(seed.tolist(), init.tolist())))
        for s, i in keys:
            rows = (seed == s) & (init == i) & ~bad
            order = np.argsort(lr[rows])
            name = [label] if label else []
            if s != NO_SEED and len({k[0] for k in keys}) > 1:
                name.append(f"seed {s}")
            if len({k[1] for k in keys}) > 1:
                name.append(f"start {i}")
            ax.plot(lr[rows][order], loss[rows][order], marker=".", label=", ".join(name) or None)
    if diverged_lrs:
        top = ax.get_xaxis_transform()  # x in data, y in axes fraction
        ax.plot(diverged_lrs, np.full(len(diverged_lrs), 0.97), "x", color="red",
                transform=top, label="diverged", clip_on=False)
    ax.set_xscale("log")
    finite = [np.asarray(r.loss)[~np.asarray(r.diverged)] for r in results.values()]
    finite = np.concatenate(finite) if finite else np.array([])
    if finite.size and np.all(finite > 0) and finite.max() / finite.min() > 100:
        ax.set_yscale("log")  # near-divergent runs would flatten the rest
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final loss (whole data)")
    if title:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax


def write_sweep_plot(results, path, *, title: str | None = None) -> None:
    """`plot_sweep` saved to `path` (format from its suffix), written atomically."""
    fig = plot_sweep(results, title=title).figure
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
