"""torch.nn.functional.embedding in JAX: rows of a weight matrix, looked up by index.

Torch's layout: `weight` is (num_embeddings, embedding_dim), one row per index. The row at
`padding_idx` is looked up like any other but gets no gradient, as in torch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from functional_fit import checks


def _padding_row(padding_idx, rows: int):
    """torch's padding_idx as a row in [0, rows) (negative counts from the end), or None."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, int | np.integer):
        raise checks.InputError(f"padding_idx must be an integer or None, got {padding_idx!r}")
    if not -rows <= padding_idx < rows:
        raise checks.InputError(f"padding_idx must be within the {rows} rows of weight, "
                                f"got {padding_idx}")
    return int(padding_idx) % rows


def _indices(input, rows: int):
    """`input` as a JAX integer array, its values checked against `rows` when they are known."""
    if not jnp.issubdtype(jnp.result_type(input), jnp.integer):
        raise checks.InputError(f"input must hold integer indices, got dtype "
                                f"{jnp.result_type(input)}")
    if not isinstance(input, jax.core.Tracer):
        values = np.asarray(input)
        if values.size and (values.min() < 0 or values.max() >= rows):
            raise checks.InputError(f"input: indices must be in [0, {rows}), got values from "
                                    f"{values.min()} to {values.max()}")
    return jnp.asarray(input)


def embedding(input, weight, padding_idx=None, max_norm=None,  # torch's F.embedding
              norm_type=2.0, scale_grad_by_freq=False, sparse=False):
    """torch.nn.functional.embedding: ``weight[input]``, no gradient to the padding row.

    ``max_norm`` (which makes torch renormalize rows of `weight` in place) and
    ``scale_grad_by_freq`` are refused; ``sparse`` only chooses the layout of torch's gradient
    and has no effect here (the gradient is dense). Indices out of range are refused when
    `input` is concrete; under `jax.jit` JAX clips them.

    Args:
      input: (*) integer indices in [0, num_embeddings).
      weight: (num_embeddings, embedding_dim).
      padding_idx: a row (negative counts from the end) whose lookups pass no gradient, or None.

    Returns:
      (*, embedding_dim).
    """
    weight = jnp.asarray(weight)
    if weight.ndim != 2:
        raise checks.InputError(f"weight must be (num_embeddings, embedding_dim), got shape "
                                f"{weight.shape}")
    if max_norm is not None:
        raise checks.InputError("max_norm is not supported: torch renormalizes weight in place; "
                                "renormalize the rows before the call")
    if checks.flag("scale_grad_by_freq", scale_grad_by_freq):
        raise checks.InputError("scale_grad_by_freq=True is not supported")
    checks.flag("sparse", sparse)
    row = _padding_row(padding_idx, weight.shape[0])
    idx = _indices(input, weight.shape[0])
    out = jnp.take(weight, idx, axis=0)  # (*, embedding_dim)
    if row is None:
        return out
    padded = (idx == row)[..., None]  # (*, 1)
    return jnp.where(padded, jax.lax.stop_gradient(out), out)  # (*, embedding_dim)


__all__ = ["embedding"]
