"""Kernels: the losses of one block of G grid points, from their (a, b) coordinates.

A kernel maps the (a, b) coordinates of one block of G grid points to their G losses,
``kernel(args, a, b) -> (G,)``. It is a frozen dataclass, so that jit can hash it and compile
once per model and loss.

- `Streamed`: grid points are the vector axis, the data points the stream: a `lax.scan` walks
  the data K points at a time, each step adding K per-point terms as a tree, several steps
  unrolled into one pass over the block:

      acc[g] += tree_sum(term(W[:, g], x[k], y[k]) for k in chunk)   # W (p+1, G), acc (G,)
      loss[g] = acc[g] / n

  ``term(w, x_k, y_k) = loss(model(w, x[k:k+1]), y[k:k+1])`` is the loss on one point.
- `Vmapped`: the full loss at each grid point, vmapped over the block: any model and loss; a
  network's layers become batched matrix products.
- `Quadratic`: the exact MSE of a model linear in its parameters, from six coefficients
  (`functional_fit.surface.mse_surface_exact`).
"""

from __future__ import annotations

import dataclasses

import jax

from functional_fit.surface.planes import Plane


def tree_sum(terms):
    """The sum of a list of arrays, added pairwise: the chain of dependent adds is log2 long."""
    while len(terms) > 1:
        terms = [sum(terms[i : i + 2]) for i in range(0, len(terms), 2)]
    return terms[0]


def points(plane: Plane, a, b):
    """The block's parameter vectors as columns, (p+1, G), from a (G,) and b (G,), in the
    plane's dtype (a float32 network stays float32 on a float64 grid)."""
    origin, u, v = plane
    a, b = a.astype(origin.dtype), b.astype(origin.dtype)
    return origin[:, None] + u[:, None] * a[None, :] + v[:, None] * b[None, :]  # (p+1, G)


@dataclasses.dataclass(frozen=True)
class Streamed:
    """Stream over the data points, vectorize across the G grid points of a block.

    Needs a loss that is a mean of per-point terms and a model whose prediction at x[k]
    depends on x[k] alone (the module's docstring of `functional_fit.surface`).
    """

    model: object
    loss: object
    data_chunk: int  # data points per scan step, added as a tree (`Runtime.data_chunk`)
    max_terms: int  # data points per pass of the loop at most (`Runtime.max_terms`)
    term_budget: int  # a term of e equations gets budget // e**2 points a pass

    def term(self, w, xk, yk):
        """The loss on one data point; (p+1,), (), () -> ()."""
        return self.loss(self.model(w, xk[None]), yk[None])  # a mean over one point

    def __call__(self, args, a, b):
        (x, y), plane = args
        w = points(plane, a, b)  # (p+1, G)
        terms = jax.vmap(self.term, in_axes=(1, None, None))  # over the grid points

        def chunk_sum(xs, ys):
            return tree_sum([terms(w, xs[i], ys[i]) for i in range(xs.shape[0])])  # (G,)

        n = x.shape[0]
        # compile time grows faster than the unrolled body: fewer terms a pass for a big term
        size = len(jax.make_jaxpr(terms)(w, x[0], y[0]).eqns)
        per_pass = max(1, min(self.max_terms, self.term_budget // size**2))
        chunk = min(self.data_chunk, per_pass)
        steps, rest = divmod(n, chunk)
        k = chunk if steps else rest
        acc = chunk_sum(x[:k], y[:k])  # (G,) the first chunk starts the sum
        if steps > 1:
            xc = x[k : steps * k].reshape((steps - 1, k) + x.shape[1:])  # (steps-1, K, ...)
            yc = y[k : steps * k].reshape((steps - 1, k) + y.shape[1:])

            def body(acc, xy):
                return acc + chunk_sum(*xy), None

            unroll = max(1, min(steps - 1, per_pass // chunk))
            acc, _ = jax.lax.scan(body, acc, (xc, yc), unroll=unroll)
        if steps and rest:
            acc = acc + chunk_sum(x[steps * k :], y[steps * k :])
        return acc / n  # (G,)


@dataclasses.dataclass(frozen=True)
class Vmapped:
    """The full loss at each grid point, vmapped over the block: any model and loss."""

    model: object
    loss: object

    def __call__(self, args, a, b):
        (x, y), plane = args
        at = lambda w: self.loss(self.model(w, x), y)  # noqa: E731  (p+1,) -> ()
        w = points(plane, a, b)  # (p+1, G)
        if w.shape[1] == 1:  # one point: the model as written (a vmap of one makes a
            return at(w[:, 0])[None]  # convolution over a batch of kernels, a grouped one)
        return jax.vmap(at, in_axes=1)(w)  # (G,)


@dataclasses.dataclass(frozen=True)
class Quadratic:
    """An exact quadratic in (a, b) about the grid centre (a0, b0); see `mse_surface_exact`."""

    def __call__(self, args, a, b):
        a0, b0, q0, qa, qb, qaa, qab, qbb = args
        da, db = a - a0, b - b0  # (G,)
        return q0 + da * (qa + qaa * da + qab * db) + db * (qb + qbb * db)  # (G,)


__all__ = ["Quadratic", "Streamed", "Vmapped", "points", "tree_sum"]
