"""torch's attention in JAX: `scaled_dot_product_attention` and `multi_head_attention_forward`.

Torch's layouts: `scaled_dot_product_attention` takes (..., L, E) queries against (..., S, E)
keys; `multi_head_attention_forward` is sequence first, (L, N, E) (or unbatched (L, E)), with
the packed (3E, E) `in_proj_weight` of nn.MultiheadAttention (nn.MultiheadAttention with
``batch_first=True`` transposes its (N, L, E) inputs to this layout and back).

The two read boolean masks in opposite ways, as torch does: for `scaled_dot_product_attention`
True means "attend"; for `multi_head_attention_forward`'s `attn_mask` and `key_padding_mask`
True means "masked out". Float masks are added to the scores in both.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from functional_fit import checks


def _additive(mask, dtype, keep_where_true: bool):
    """A boolean or float mask as float scores to add: 0 where attending, -inf where not."""
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        return mask.astype(dtype)
    attend = mask if keep_where_true else ~mask
    return jnp.where(attend, jnp.zeros((), dtype), jnp.full((), -jnp.inf, dtype))


def _softmax(scores, safe: bool):
    """softmax over the last axis; with `safe`, rows masked out entirely give 0, not NaN, as
    torch's SDPA gives (its `_safe_softmax`), and pass no NaN back in the gradient."""
    if not safe:
        return jax.nn.softmax(scores, axis=-1)
    empty = jnp.all(scores == -jnp.inf, axis=-1, keepdims=True)  # (..., L, 1)
    probs = jax.nn.softmax(jnp.where(empty, jnp.zeros((), scores.dtype), scores), axis=-1)
    return jnp.where(empty, jnp.zeros((), scores.dtype), probs)  # (..., L, S)


def _scores_mask(attn_mask, is_causal: bool, shape, dtype):
    """The additive (..., L, S) mask of `scaled_dot_product_attention`, or None."""
    if is_causal:
        if attn_mask is not None:
            raise checks.InputError("attn_mask must be None when is_causal=True (torch refuses "
                                    "both)")
        causal = jnp.tril(jnp.ones(shape[-2:], dtype=jnp.bool_))  # (L, S), top-left aligned
        return _additive(causal, dtype, keep_where_true=True)
    if attn_mask is None:
        return None
    try:
        jnp.broadcast_shapes(jnp.shape(attn_mask), shape)
    except ValueError:
        raise checks.InputError(f"attn_mask of shape {jnp.shape(attn_mask)} does not broadcast "
                                f"to the scores' shape {shape}") from None
    return _additive(attn_mask, dtype, keep_where_true=True)


def _repeat_heads(query, key, value, enable_gqa: bool):
    """Key and value with their heads (axis -3) repeated to the query's, for grouped queries."""
    if not checks.flag("enable_gqa", enable_gqa) or key.ndim < 3:
        return key, value
    hq, hk = query.shape[-3], key.shape[-3]
    if hq % hk:
        raise checks.InputError(f"key: its {hk} heads must divide the query's {hq} heads")
    return jnp.repeat(key, hq // hk, axis=-3), jnp.repeat(value, hq // hk, axis=-3)


def scaled_dot_product_attention(query, key, value, attn_mask=None,  # torch's F.sdpa
                                 dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention without dropout.

    softmax(query @ key^T * scale + mask) @ value, with scale = 1 / sqrt(E) by default. A
    boolean `attn_mask` keeps the scores where it is True; a float one is added to them.
    ``is_causal`` masks out keys after each query (top-left aligned, as torch) and cannot be
    combined with `attn_mask`. A query whose keys are all masked out gets zeros, as torch's.
    ``dropout_p`` other than 0 is refused: torch draws that mask inside the kernel, where it
    cannot be given to JAX.

    Args:
      query: (..., L, E); key: (..., S, E); value: (..., S, Ev). With ``enable_gqa``, key
        and value may have fewer heads (axis -3) than query, a divisor of its number.
      attn_mask: broadcastable to (..., L, S), booleans or floats, or None.

    Returns:
      (..., L, Ev).
    """
    query, key, value = (jnp.asarray(a) for a in (query, key, value))
    if checks.finite_float("dropout_p", dropout_p) != 0:
        raise checks.InputError("dropout_p must be 0: attention dropout is not supported")
    key, value = _repeat_heads(query, key, value, enable_gqa)
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else checks.finite_float("scale",
                                                                                     scale)
    scores = query @ jnp.swapaxes(key, -1, -2) * jnp.asarray(scale, query.dtype)  # (..., L, S)
    mask = _scores_mask(attn_mask, checks.flag("is_causal", is_causal), scores.shape,
                        scores.dtype)
    if mask is not None:
        scores = scores + jnp.broadcast_to(mask, scores.shape)  # (..., L, S)
    return _softmax(scores, safe=True) @ value  # (..., L, Ev)


def _in_projection(query, key, value, weights, bias, embed_dim: int):
    """q, k, v = each input @ its (E, E) block of the packed weights^T + its block of bias."""
    qkv = []
    for i, x in enumerate((query, key, value)):
        w = weights[i]  # (E, E_in), (out, in)
        b = None if bias is None else bias[i * embed_dim:(i + 1) * embed_dim]  # (E,)
        y = x @ w.T  # (L or S, N, E)
        qkv.append(y if b is None else y + jnp.asarray(b)[None, None])  # (L or S, N, E)
    return qkv


def _shaped(name: str, value, shape):
    """`value` as a JAX array of `shape`, or InputError naming `name`."""
    if value is None or jnp.shape(value) != shape:
        raise checks.InputError(f"{name} must have shape {shape}, got "
                                f"{None if value is None else jnp.shape(value)}")
    return jnp.asarray(value)


def _projection_weights(in_proj_weight, separate: bool, separate_weights, dims):
    """The (E, E), (E, E_k), (E, E_v) projections: the packed (3E, E) weight split, or the
    separate ones given, for dims = (E, E_k, E_v)."""
    e = dims[0]
    if not separate:
        return jnp.split(_shaped("in_proj_weight", in_proj_weight, (3 * e, e)), 3)  # 3 x (E, E)
    names = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
    return [_shaped(n, w, (e, d)) for n, w, d in zip(names, separate_weights, dims, strict=True)]


def _canonical_masks(attn_mask, key_padding_mask, dtype, shape):
    """MHA's masks (True: masked out) as additive floats: attn_mask (L, S) or (N * H, L, S),
    key_padding_mask (N, S); either may be None. `shape` is the scores' (N, H, L, S)."""
    bsz, heads, tgt, src = shape
    if attn_mask is not None:
        attn_mask = _additive(attn_mask, dtype, keep_where_true=False)
        if attn_mask.shape not in ((tgt, src), (bsz * heads, tgt, src)):
            raise checks.InputError(f"attn_mask must be ({tgt}, {src}) or ({bsz * heads}, {tgt},"
                                    f" {src}), got {attn_mask.shape}")
    if key_padding_mask is not None:
        key_padding_mask = _additive(key_padding_mask, dtype, keep_where_true=False)
        if key_padding_mask.shape != (bsz, src):
            raise checks.InputError(f"key_padding_mask must be ({bsz}, {src}), got "
                                    f"{key_padding_mask.shape}")
    return attn_mask, key_padding_mask


def _merged_mask(attn_mask, key_padding_mask, shape):
    """The one additive (N, H, L, S) mask torch adds to the scores, or None."""
    parts = []
    if attn_mask is not None:  # (L, S), or (N * H, L, S) with sample-major rows
        parts.append(attn_mask.reshape(shape) if attn_mask.ndim == 3
                     else jnp.broadcast_to(attn_mask, shape))  # (N, H, L, S)
    if key_padding_mask is not None:  # (N, S)
        parts.append(jnp.broadcast_to(key_padding_mask[:, None, None, :], shape))
    return sum(parts[1:], parts[0]) if parts else None


def _refuse_unsupported(bias_k, bias_v, add_zero_attn, dropout_p, training, static_k, static_v):
    """InputError naming the first of MHA's options that is not supported here."""
    if bias_k is not None or bias_v is not None:
        raise checks.InputError("bias_k and bias_v (add_bias_kv=True) are not supported")
    if checks.flag("add_zero_attn", add_zero_attn):
        raise checks.InputError("add_zero_attn=True is not supported")
    if checks.flag("training", training) and checks.finite_float("dropout_p", dropout_p) != 0:
        raise checks.InputError("dropout_p must be 0 when training: attention dropout is not "
                                "supported (give training=False or dropout_p=0)")
    if static_k is not None or static_v is not None:
        raise checks.InputError("static_k and static_v are not supported")


def _causal_hint(is_causal, attn_mask, key_padding_mask, need_weights, tgt: int, src: int):
    """torch's reading of MHA's is_causal: a hint that needs attn_mask, which the causal mask
    replaces where torch lets SDPA apply it (no key_padding_mask, no weights)."""
    if not checks.flag("is_causal", is_causal):
        return attn_mask
    if attn_mask is None:
        raise checks.InputError("attn_mask is needed when is_causal=True (torch's hint)")
    if key_padding_mask is None and not need_weights:
        return ~jnp.tril(jnp.ones((tgt, src), dtype=jnp.bool_))  # (L, S) True: masked out
    return attn_mask


def multi_head_attention_forward(  # torch's F.multi_head_attention_forward, keyword for keyword
        query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias, bias_k,
        bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias, training=True,
        key_padding_mask=None, need_weights=True, attn_mask=None, use_separate_proj_weight=False,
        q_proj_weight=None, k_proj_weight=None, v_proj_weight=None, static_k=None,
        static_v=None, average_attn_weights=True, is_causal=False):
    """torch.nn.functional.multi_head_attention_forward: nn.MultiheadAttention's computation.

    Heads split E into num_heads blocks of E / num_heads; each attends with scale
    1 / sqrt(E / num_heads); the heads' outputs are concatenated and projected by
    `out_proj_weight`. Boolean masks are True where masked out; float masks are added. A
    query whose keys are all masked out gets NaN with need_weights (torch's softmax) and zeros
    without (torch's scaled_dot_product_attention), as in torch.
    Not supported (refused by name): bias_k/bias_v, add_zero_attn, static_k/static_v and
    dropout while training.

    Args:
      query: (L, N, E) or (L, E); key, value: (S, N, E_k), (S, N, E_v) or unbatched.
      embed_dim_to_check: E, checked against query.
      in_proj_weight: (3E, E) packed q, k, v weights, (out, in); or None with
        use_separate_proj_weight and q_proj_weight (E, E), k_proj_weight (E, E_k),
        v_proj_weight (E, E_v).
      in_proj_bias: (3E,) or None. out_proj_weight: (E, E). out_proj_bias: (E,) or None.
      key_padding_mask: (N, S) or (S,) unbatched, or None.
      attn_mask: (L, S) or (N * num_heads, L, S), or None.
      need_weights, average_attn_weights: return the attention weights, averaged over heads.

    Returns:
      (attn_output (L, N, E) or (L, E), attn_weights (N, L, S) averaged, (N, H, L, S) not
      averaged, without N unbatched; None without need_weights).
    """
    _refuse_unsupported(bias_k, bias_v, add_zero_attn, dropout_p, training, static_k, static_v)
    need_weights = checks.flag("need_weights", need_weights)
    query, key, value = (jnp.asarray(a) for a in (query, key, value))
    batched = query.ndim == 3
    if not batched:
        query, key, value = query[:, None], key[:, None], value[:, None]  # (L, 1, E)
        key_padding_mask = None if key_padding_mask is None else jnp.asarray(key_padding_mask)[None]
    tgt, bsz, embed_dim = query.shape
    src, heads = key.shape[0], checks.positive_int("num_heads", num_heads)
    if embed_dim != embed_dim_to_check or embed_dim % heads:
        raise checks.InputError(f"embed_dim_to_check ({embed_dim_to_check}) must be query's "
                                f"last dimension ({embed_dim}), divisible by num_heads ({heads})")
    weights = _projection_weights(
        in_proj_weight, checks.flag("use_separate_proj_weight", use_separate_proj_weight),
        (q_proj_weight, k_proj_weight, v_proj_weight),
        (embed_dim, key.shape[-1], value.shape[-1]))
    q, k, v = _in_projection(query, key, value, weights, in_proj_bias,
                             embed_dim)  # (L, N, E), (S, N, E), (S, N, E)
    attn_mask = _causal_hint(is_causal, attn_mask, key_padding_mask, need_weights, tgt, src)
    attn_mask, key_padding_mask = _canonical_masks(attn_mask, key_padding_mask, q.dtype,
                                                   (bsz, heads, tgt, src))
    mask = _merged_mask(attn_mask, key_padding_mask, (bsz, heads, tgt, src))  # (N, H, L, S)
    d = embed_dim // heads
    q, k, v = (a.reshape(a.shape[0], bsz, heads, d).transpose(1, 2, 0, 3)
               for a in (q, k, v))  # (N, H, L or S, d)
    scores = q * jnp.asarray(math.sqrt(1.0 / d), q.dtype) @ jnp.swapaxes(k, -1, -2)  # (N,H,L,S)
    scores = scores if mask is None else scores + mask  # (N, H, L, S)
    weights = _softmax(scores, safe=not need_weights)  # torch's SDPA path when no weights
    out = (weights @ v).transpose(2, 0, 1, 3).reshape(tgt, bsz, embed_dim)  # (L, N, E)
    out = out @ jnp.asarray(out_proj_weight).T  # (L, N, E)
    out = out if out_proj_bias is None else out + jnp.asarray(out_proj_bias)[None, None]
    if checks.flag("average_attn_weights", average_attn_weights):
        weights = jnp.mean(weights, axis=1)  # (N, L, S)
    if not batched:
        out, weights = out[:, 0], weights[0]  # (L, E); (L, S) or (H, L, S)
    return out, weights if need_weights else None


__all__ = ["scaled_dot_product_attention", "multi_head_attention_forward"]
