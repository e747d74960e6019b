"""functional_fit.nn against torch.nn.functional (and nn.MultiheadAttention), in float64.

One table: each case runs the same call in both frameworks, compares every output, then pulls
the same random cotangents back through both (jax.grad against torch autograd) and compares
the gradients with respect to the named inputs. `batch_norm`'s new running statistics are
compared with the buffers torch updated in place. Error cases give the argument the InputError
must name, and whether torch refuses the same call.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from functional_fit import nn
from functional_fit.checks import InputError
from functional_fit.tolerances import GRAD_FLOAT64, rel_err

#: Values and gradients: a few hundred float64 roundings apart at most (tolerances.GRAD_FLOAT64).
TOL = GRAD_FLOAT64
RNG = np.random.default_rng(21)


def normal(*shape):
    return RNG.normal(size=shape)


class Case(NamedTuple):
    name: str
    jax_fn: Callable  # (**inputs) -> an array or a tuple of arrays (None allowed)
    torch_fn: Callable  # (**tensors) -> the same
    inputs: dict  # name -> numpy array (or None)
    grads: tuple = ()  # the inputs to differentiate with respect to
    error: str | None = None  # the argument named by the InputError expected
    torch_refuses: bool = False  # whether torch raises too


# --------------------------------------------------------------------------- normalization


def _bn_jax(training, momentum=0.1):
    return lambda **a: nn.batch_norm(**a, training=training, momentum=momentum)


def _bn_torch(training, momentum=0.1):
    def fn(input, running_mean, running_var, weight=None, bias=None):
        mean = None if running_mean is None else running_mean.clone()
        var = None if running_var is None else running_var.clone()
        out = F.batch_norm(input, mean, var, weight, bias, training=training, momentum=momentum)
        return out, mean, var  # the buffers, after torch updated them
    return fn


def _bn_inputs(*shape, affine=True, running=True):
    c = shape[1]
    return {"input": normal(*shape) * 3 + 1,
            "running_mean": normal(c) if running else None,
            "running_var": RNG.uniform(0.5, 2, c) if running else None,
            "weight": normal(c) if affine else None, "bias": normal(c) if affine else None}


NORMALIZATION = [
    Case("batch_norm train (N, C)", _bn_jax(True), _bn_torch(True), _bn_inputs(8, 3),
         ("input", "weight", "bias")),
    Case("batch_norm train NCHW, momentum 0.3", _bn_jax(True, 0.3), _bn_torch(True, 0.3),
         _bn_inputs(4, 3, 5, 5), ("input", "weight", "bias")),
    Case("batch_norm train, batch of 1 with 9 positions", _bn_jax(True), _bn_torch(True),
         _bn_inputs(1, 2, 3, 3), ("input", "weight", "bias")),
    Case("batch_norm train (N, C, L), no affine, no running stats", _bn_jax(True),
         _bn_torch(True), _bn_inputs(5, 4, 6, affine=False, running=False), ("input",)),
    Case("batch_norm momentum 1/num_batches_tracked (cumulative)", _bn_jax(True, 1 / 3),
         _bn_torch(True, 1 / 3), _bn_inputs(6, 2, 4), ("input", "weight", "bias")),
    Case("batch_norm momentum a JAX scalar", _bn_jax(True, jnp.asarray(0.25)),
         _bn_torch(True, 0.25), _bn_inputs(6, 2, 4), ("input", "weight", "bias")),
    Case("batch_norm eval NCHW", _bn_jax(False), _bn_torch(False), _bn_inputs(3, 4, 2, 5),
         ("input", "weight", "bias")),
    Case("batch_norm train, one value per channel", _bn_jax(True), _bn_torch(True),
         _bn_inputs(1, 3), error="input", torch_refuses=True),
    Case("batch_norm train, (1, C, 1, 1)", _bn_jax(True), _bn_torch(True),
         _bn_inputs(1, 3, 1, 1), error="input", torch_refuses=True),
    Case("batch_norm momentum None", _bn_jax(True, None), _bn_torch(True, None),
         _bn_inputs(4, 3), error="momentum", torch_refuses=True),
    Case("batch_norm eval without running statistics", _bn_jax(False), _bn_torch(False),
         _bn_inputs(4, 3, running=False), error="running_mean", torch_refuses=True),
    Case("batch_norm weight of the wrong size", _bn_jax(True), _bn_torch(True),
         {**_bn_inputs(4, 3), "weight": normal(4)}, error="weight", torch_refuses=True),
    Case("layer_norm last axis",
         lambda **a: nn.layer_norm(normalized_shape=5, **a),
         lambda **a: F.layer_norm(normalized_shape=(5,), **a),
         {"input": normal(4, 5) * 2 - 1, "weight": normal(5), "bias": normal(5)},
         ("input", "weight", "bias")),
    Case("layer_norm two trailing axes",
         lambda **a: nn.layer_norm(normalized_shape=(4, 5), **a),
         lambda **a: F.layer_norm(normalized_shape=(4, 5), **a),
         {"input": normal(2, 3, 4, 5), "weight": normal(4, 5), "bias": normal(4, 5)},
         ("input", "weight", "bias")),
    Case("layer_norm no affine, eps 1e-3",
         lambda **a: nn.layer_norm(normalized_shape=[3, 2], eps=1e-3, **a),
         lambda **a: F.layer_norm(normalized_shape=[3, 2], eps=1e-3, **a),
         {"input": normal(4, 3, 2)}, ("input",)),
    Case("layer_norm shape that is not trailing",
         lambda **a: nn.layer_norm(normalized_shape=(4,), **a),
         lambda **a: F.layer_norm(normalized_shape=(4,), **a),
         {"input": normal(4, 5)}, error="normalized_shape", torch_refuses=True),
    *[Case(f"group_norm {g} groups of {shape}",
           lambda g=g, **a: nn.group_norm(num_groups=g, **a),
           lambda g=g, **a: F.group_norm(num_groups=g, **a),
           {"input": normal(*shape) + 2, "weight": normal(shape[1]), "bias": normal(shape[1])},
           ("input", "weight", "bias"))
      for g, shape in ((2, (3, 6, 4, 4)), (6, (2, 6, 3, 3)), (1, (2, 6, 5)), (3, (4, 9)))],
    Case("group_norm no affine",
         lambda **a: nn.group_norm(num_groups=2, **a),
         lambda **a: F.group_norm(num_groups=2, **a), {"input": normal(2, 4, 3)}, ("input",)),
    Case("group_norm groups that do not divide C",
         lambda **a: nn.group_norm(num_groups=4, **a),
         lambda **a: F.group_norm(num_groups=4, **a),
         {"input": normal(2, 6, 3)}, error="num_groups", torch_refuses=True),
]

# --------------------------------------------------------------------------- embedding, dropout

INDICES = np.array([[0, 1, 3], [1, 4, 1]])
X_DROP = RNG.uniform(0.5, 2, (6, 7))  # no zeros: torch's mask is where its output is non-zero


def _torch_dropout(p, seed=0):
    def fn(input, mask=None):
        torch.manual_seed(seed)
        return F.dropout(input, p)
    return fn


torch.manual_seed(0)
TORCH_MASK = (F.dropout(torch.tensor(X_DROP), 0.3) != 0).numpy()  # the mask _torch_dropout draws
JAX_KEY = jax.random.key(7)
JAX_MASK = np.asarray(jax.random.bernoulli(JAX_KEY, 0.6, X_DROP.shape))

SPARSE_DROPOUT = [
    Case("embedding", nn.embedding, F.embedding,
         {"input": INDICES, "weight": normal(5, 3)}, ("weight",)),
    *[Case(f"embedding padding_idx={i}: no gradient to that row",
           lambda i=i, **a: nn.embedding(padding_idx=i, **a),
           lambda i=i, **a: F.embedding(padding_idx=i, **a),
           {"input": INDICES, "weight": normal(5, 3)}, ("weight",)) for i in (1, -1)],
    Case("embedding padding_idx out of range", lambda **a: nn.embedding(padding_idx=5, **a),
         lambda **a: F.embedding(padding_idx=5, **a),
         {"input": INDICES, "weight": normal(5, 3)}, error="padding_idx", torch_refuses=True),
    Case("embedding index out of range", nn.embedding, F.embedding,
         {"input": INDICES + 1, "weight": normal(5, 3)}, error="input", torch_refuses=True),
    Case("embedding float indices", nn.embedding, F.embedding,
         {"input": INDICES * 1.0, "weight": normal(5, 3)}, error="input", torch_refuses=True),
    Case("embedding max_norm", lambda **a: nn.embedding(max_norm=1.0, **a),
         lambda **a: F.embedding(max_norm=1.0, **a),
         {"input": INDICES, "weight": normal(5, 3)}, error="max_norm"),
    Case("dropout with torch's mask", lambda **a: nn.dropout(p=0.3, **a), _torch_dropout(0.3),
         {"input": X_DROP, "mask": TORCH_MASK}, ("input",)),
    Case("dropout with torch's mask as 0/1", lambda **a: nn.dropout(p=0.3, **a),
         _torch_dropout(0.3), {"input": X_DROP, "mask": TORCH_MASK.astype(np.float64)},
         ("input",)),
    Case("dropout from a JAX key (the mask it draws, scaled as torch scales)",
         lambda input: nn.dropout(input, 0.4, key=JAX_KEY),
         lambda input: input * (torch.tensor(JAX_MASK, dtype=torch.float64) / 0.6),
         {"input": X_DROP}, ("input",)),
    Case("dropout p=1 gives zeros", lambda input: nn.dropout(input, 1.0),
         lambda input: F.dropout(input, 1.0), {"input": X_DROP}, ("input",)),
    Case("dropout p=0", lambda input: nn.dropout(input, 0.0),
         lambda input: F.dropout(input, 0.0), {"input": X_DROP}, ("input",)),
    Case("dropout training=False", lambda input: nn.dropout(input, 0.5, training=False),
         lambda input: F.dropout(input, 0.5, training=False), {"input": X_DROP}, ("input",)),
    Case("dropout with neither key nor mask", lambda input: nn.dropout(input, 0.5),
         lambda input: F.dropout(input, 0.5), {"input": X_DROP}, error="key"),
    Case("dropout p > 1", lambda **a: nn.dropout(p=1.5, **a), _torch_dropout(1.5),
         {"input": X_DROP, "mask": TORCH_MASK}, error="p", torch_refuses=True),
    Case("dropout mask of another shape", lambda **a: nn.dropout(p=0.3, **a),
         _torch_dropout(0.3), {"input": X_DROP, "mask": TORCH_MASK[:, :3]}, error="mask"),
]

# --------------------------------------------------------------------------- attention


def _sdpa(**kw):
    return (lambda **a: nn.scaled_dot_product_attention(**a, **kw),
            lambda **a: F.scaled_dot_product_attention(**a, **kw))


def _qkv(lead, length, source, e=5, ev=7, heads_kv=None):
    kv = lead if heads_kv is None else (*lead[:-1], heads_kv)
    return {"query": normal(*lead, length, e), "key": normal(*kv, source, e),
            "value": normal(*kv, source, ev)}


KEEP = RNG.uniform(size=(4, 6)) < 0.6
KEEP[:, 0] = True  # every query attends to at least one key

SDPA = [
    Case("sdpa", *_sdpa(), _qkv((2, 3), 4, 6), ("query", "key", "value")),
    Case("sdpa causal, L = S", *_sdpa(is_causal=True), _qkv((2, 3), 4, 4),
         ("query", "key", "value")),
    Case("sdpa causal, L < S (top-left aligned)", *_sdpa(is_causal=True), _qkv((2,), 3, 5),
         ("query", "key", "value")),
    Case("sdpa boolean mask (keep where True)", *_sdpa(),
         {**_qkv((2, 3), 4, 6), "attn_mask": KEEP}, ("query", "key", "value")),
    Case("sdpa a query with every key masked out gets zeros", *_sdpa(),
         {**_qkv((2, 3), 4, 6), "attn_mask": np.vstack([KEEP[:3], np.zeros((1, 6), bool)])},
         ("query", "key", "value")),
    Case("sdpa float mask, broadcast", *_sdpa(),
         {**_qkv((2, 3), 4, 6), "attn_mask": normal(1, 1, 4, 6)},
         ("query", "key", "value", "attn_mask")),
    Case("sdpa scale 0.3", *_sdpa(scale=0.3), _qkv((3,), 4, 6), ("query", "key", "value")),
    Case("sdpa grouped query heads", *_sdpa(enable_gqa=True), _qkv((2, 4), 3, 5, heads_kv=2),
         ("query", "key", "value")),
    Case("sdpa causal and a mask", *_sdpa(is_causal=True),
         {**_qkv((2, 3), 4, 6), "attn_mask": KEEP}, error="attn_mask", torch_refuses=True),
    Case("sdpa mask that does not broadcast", *_sdpa(),
         {**_qkv((2, 3), 4, 6), "attn_mask": KEEP.T}, error="attn_mask", torch_refuses=True),
    Case("sdpa dropout", *_sdpa(dropout_p=0.1), _qkv((2,), 4, 6), error="dropout_p"),
]

E, H, L, S, N = 8, 2, 3, 5, 2
TORCH_NAMES = {"out_proj_weight": "out_proj.weight", "out_proj_bias": "out_proj.bias"}


def _mha_params(kdim=E, vdim=E):
    packed = kdim == vdim == E
    weights = ({"in_proj_weight": normal(3 * E, E)} if packed else
               {"q_proj_weight": normal(E, E), "k_proj_weight": normal(E, kdim),
                "v_proj_weight": normal(E, vdim)})
    return {**weights, "in_proj_bias": normal(3 * E), "out_proj_weight": normal(E, E),
            "out_proj_bias": normal(E)}


def _mha(kdim=E, vdim=E, batch_first=False, **kw):
    """(jax_fn, torch_fn) for nn.MultiheadAttention(E, H) called with keywords `kw`."""
    module = torch.nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, batch_first=batch_first,
                                         dtype=torch.float64)

    def torch_fn(query, key, value, key_padding_mask=None, attn_mask=None, **params):
        params = {TORCH_NAMES.get(k, k): v for k, v in params.items()}
        return torch.func.functional_call(module, params, (query, key, value), dict(
            key_padding_mask=key_padding_mask, attn_mask=attn_mask, **kw))

    def jax_fn(query, key, value, key_padding_mask=None, attn_mask=None, **p):
        if batch_first:
            query, key, value = (a.swapaxes(0, 1) for a in (query, key, value))  # (L, N, E)
        out, weights = nn.multi_head_attention_forward(
            query, key, value, E, H, p.get("in_proj_weight"), p["in_proj_bias"], None, None,
            False, 0.0, p["out_proj_weight"], p["out_proj_bias"],
            key_padding_mask=key_padding_mask, attn_mask=attn_mask,
            use_separate_proj_weight="q_proj_weight" in p, q_proj_weight=p.get("q_proj_weight"),
            k_proj_weight=p.get("k_proj_weight"), v_proj_weight=p.get("v_proj_weight"), **kw)
        return (out.swapaxes(0, 1) if batch_first else out), weights

    return jax_fn, torch_fn


def _mha_inputs(kdim=E, vdim=E, lead=(N,), **masks):
    return {"query": normal(L, *lead, E), "key": normal(S, *lead, kdim),
            "value": normal(S, *lead, vdim), **masks, **_mha_params(kdim, vdim)}


PADDED = np.array([[False, False, False, True, True], [False, False, False, False, True]])
CAUSAL = ~np.tril(np.ones((L, S), dtype=bool))  # True: masked out
MHA_GRADS = ("query", "key", "value", "in_proj_bias", "out_proj_weight", "out_proj_bias")
PACKED_GRADS = (*MHA_GRADS, "in_proj_weight")

ATTENTION = [
    Case("MultiheadAttention", *_mha(), _mha_inputs(), PACKED_GRADS),
    Case("MultiheadAttention key_padding_mask", *_mha(),
         _mha_inputs(key_padding_mask=PADDED), PACKED_GRADS),
    Case("MultiheadAttention float attn_mask", *_mha(),
         _mha_inputs(attn_mask=normal(L, S)), (*PACKED_GRADS, "attn_mask")),
    Case("MultiheadAttention boolean attn_mask and key_padding_mask", *_mha(),
         _mha_inputs(attn_mask=CAUSAL, key_padding_mask=PADDED), PACKED_GRADS),
    Case("MultiheadAttention (N * H, L, S) float mask, weights per head",
         *_mha(average_attn_weights=False), _mha_inputs(attn_mask=normal(N * H, L, S)),
         PACKED_GRADS),
    Case("MultiheadAttention is_causal, no weights", *_mha(is_causal=True, need_weights=False),
         _mha_inputs(attn_mask=CAUSAL), PACKED_GRADS),
    Case("MultiheadAttention a sequence all padding, no weights (zeros, as SDPA)",
         *_mha(need_weights=False), _mha_inputs(key_padding_mask=np.array([[False] * S,
                                                                          [True] * S])),
         PACKED_GRADS),
    Case("MultiheadAttention batch_first", *_mha(batch_first=True),
         {**_mha_inputs(), **{k: normal(N, n, E) for k, n in (("query", L), ("key", S),
                                                              ("value", S))}}, PACKED_GRADS),
    Case("MultiheadAttention kdim and vdim (separate weights)", *_mha(kdim=6, vdim=4),
         _mha_inputs(6, 4), (*MHA_GRADS, "q_proj_weight", "k_proj_weight", "v_proj_weight")),
    Case("MultiheadAttention unbatched", *_mha(), _mha_inputs(lead=(), key_padding_mask=PADDED[0]),
         PACKED_GRADS),
    Case("MultiheadAttention is_causal without attn_mask", *_mha(is_causal=True),
         _mha_inputs(), error="attn_mask", torch_refuses=True),
    Case("MultiheadAttention attn_mask of the wrong shape", *_mha(),
         _mha_inputs(attn_mask=CAUSAL.T), error="attn_mask", torch_refuses=True),
    Case("MultiheadAttention kdim that is not the key's", *_mha(kdim=6, vdim=4),
         {**_mha_inputs(6, 4), "k_proj_weight": normal(E, 5)}, error="k_proj_weight",
         torch_refuses=True),
    Case("multi_head_attention_forward add_zero_attn",
         lambda **a: nn.multi_head_attention_forward(
             a["query"], a["key"], a["value"], E, H, a["in_proj_weight"], a["in_proj_bias"],
             None, None, True, 0.0, a["out_proj_weight"], a["out_proj_bias"]),
         None, _mha_inputs(), error="add_zero_attn"),
    Case("multi_head_attention_forward embed_dim_to_check",
         lambda **a: nn.multi_head_attention_forward(
             a["query"], a["key"], a["value"], E + 1, H, a["in_proj_weight"], a["in_proj_bias"],
             None, None, False, 0.0, a["out_proj_weight"], a["out_proj_bias"]),
         lambda **a: F.multi_head_attention_forward(
             a["query"], a["key"], a["value"], E + 1, H, a["in_proj_weight"], a["in_proj_bias"],
             None, None, False, 0.0, a["out_proj_weight"], a["out_proj_bias"]),
         _mha_inputs(), error="embed_dim_to_check", torch_refuses=True),
]

CASES = [*NORMALIZATION, *SPARSE_DROPOUT, *SDPA, *ATTENTION]


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _check_refused(case):
    if case.torch_refuses:
        with pytest.raises(Exception):
            case.torch_fn(**{k: None if v is None else torch.tensor(v)
                             for k, v in case.inputs.items()})
    with pytest.raises(InputError, match=case.error) as refused:
        case.jax_fn(**case.inputs)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_nn_against_torch(case):
    if case.error is not None:
        return _check_refused(case)
    tensors = {k: None if v is None else torch.tensor(v, requires_grad=k in case.grads)
               for k, v in case.inputs.items()}
    t_out = _tuple(case.torch_fn(**tensors))
    diff = {k: jnp.asarray(case.inputs[k]) for k in case.grads}
    fixed = {k: v for k, v in case.inputs.items() if k not in case.grads}
    j_out = _tuple(jax.jit(lambda d: case.jax_fn(**fixed, **d))(diff))
    assert len(j_out) == len(t_out)
    for j, t in zip(j_out, t_out, strict=True):
        assert (j is None) == (t is None)
        if t is not None:
            assert j.dtype == jnp.float64 and rel_err(j, t.detach().numpy()) <= TOL
    # The outputs torch differentiates (batch_norm's buffers are not), each against a cotangent.
    pulled = [i for i, t in enumerate(t_out) if t is not None and t.requires_grad]
    cotangents = [normal(*t_out[i].shape) for i in pulled]
    torch.autograd.backward([t_out[i] for i in pulled], [torch.tensor(c) for c in cotangents])

    def pullback(d):
        out = _tuple(case.jax_fn(**fixed, **d))
        return sum(jnp.vdot(out[i], c) for i, c in zip(pulled, cotangents, strict=True))

    grads = jax.jit(jax.grad(pullback))(diff)
    for k in case.grads:
        assert rel_err(grads[k], tensors[k].grad.numpy()) <= TOL, k
