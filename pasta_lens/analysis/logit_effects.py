"""What does a head write towards the answer? Each head's direct contribution to a logit difference.

:func:`direct_logit_effect` projects each head's output at the answer position through the final norm (with the
cached, frozen scale) and the unembedding onto the direction ``W_U[:, answer] - W_U[:, contrast]``
(:func:`logit_direction`)::

    effect[l, h] = LN_frozen(z_lh[pos] @ W_O[l, h]) . direction

the head's *direct* contribution to ``logit[answer] - logit[contrast]`` (paths through later layers excluded).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from pasta_lens.analysis.inputs import z_hook_name


def logit_direction(model: Any, answer: int, contrast: int | None = None) -> Float[Tensor, " d_model"]:
    """``W_U[:, answer] - W_U[:, contrast]`` (or ``W_U[:, answer]``), scaled by the final norm's weight.

    TransformerBridge does not fold the final norm's weight into ``W_U`` (a HookedTransformer with
    ``fold_ln=True`` does, and then has no ``ln_final.w``), so it is applied here when present.
    """
    w_u = model.W_U
    direction = w_u[:, answer] - (w_u[:, contrast] if contrast is not None else 0.0)
    ln_w = getattr(getattr(model, "ln_final", None), "w", None)
    if ln_w is not None:
        direction = direction * ln_w
    return direction.detach()


def direct_logit_effect(
    model: Any,
    cache: Any,
    answer: int,
    contrast: int | None = None,
    pos: int = -1,
) -> Float[Tensor, "layer head"]:
    """Each head's direct contribution to ``logit[answer] - logit[contrast]`` at position ``pos``.

    ``effect[l, h] = LN_frozen(z_lh[pos] @ W_O[l, h]) . direction``: the head's output, normalised with the
    final norm's cached scale (and centred for LayerNorm), dotted with :func:`logit_direction`. Averaged over
    the batch. The cache must hold ``blocks.L.attn.hook_z`` for every layer and ``ln_final.hook_scale``.

    Example:
        >>> _, cache = model.run_with_cache(em.tokens)
        >>> dla = direct_logit_effect(model, cache, new_id, old_id)     # [layer, head]
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    with torch.inference_mode():
        results = []
        for layer in range(n_layers):
            z = cache[z_hook_name(layer)][:, pos]  # [batch, head, d_head]
            w_o = model.blocks[layer].attn.W_O  # [head, d_head, d_model]
            results.append(torch.einsum("bhd,hdm->hbm", z.to(w_o.dtype), w_o))
        stack = torch.cat(results)  # [layer*head, batch, d_model]
        normed = cache.apply_ln_to_stack(stack, layer=None, pos_slice=pos)
        direction = logit_direction(model, answer, contrast).to(normed.dtype)
        effect = (normed @ direction).mean(-1)
    return effect.reshape(n_layers, n_heads).float().cpu()
