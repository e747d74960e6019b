"""torch.nn.functional in JAX: pure functions with torch's names, arguments, defaults and layouts.

Porting an ``F.`` call is a change of import. Where torch mutates in place (`batch_norm`'s
running statistics in training mode) the function returns the new values as well.
"""

from functional_fit.nn.attention import multi_head_attention_forward, scaled_dot_product_attention
from functional_fit.nn.dropout import dropout
from functional_fit.nn.normalization import batch_norm, group_norm, layer_norm
from functional_fit.nn.sparse import embedding

__all__ = [
    "batch_norm", "layer_norm", "group_norm",
    "embedding",
    "dropout",
    "scaled_dot_product_attention", "multi_head_attention_forward",
]
