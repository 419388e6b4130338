"""SPA, Selective Prompt Anchoring (Tian & Zhang, ICML 2025): contrast the logits of the prompt with those of the
prompt without its anchored (emphasised) tokens. Not an attention edit: the reference point that steers at the
output.

With ``s`` the logits of the prompt and ``s_aux`` those of the prompt whose anchored tokens cannot be attended to,
and strength ``w`` (the authors' ``SPALogitsProcessor``, magic-YuanTian/Selective-Prompt-Anchoring ``spa.py``, MIT):

    s' = s + (w - 1) (s - s_aux)                              (modulated=False; clamped to +-1000)
    s' = s + clamp((w - 1) / max_v p_v * p * (s - s_aux), +-100)  (modulated=True, |w| > 1; p = softmax(s) >= 1e-6)

``w = 1`` gives ``s``, ``w = 0`` gives ``s_aux``, ``w > 1`` amplifies what the anchors contribute.

Two forward passes, run as one doubled batch: the caller stacks the prompt twice (:func:`spa_batch`); rows
``B..2B`` are the auxiliary copy. Three kinds of hooks make it SPA: ``hook_embed`` copies rows ``:B`` into rows
``B:`` (at prefill they are equal; at each decode step the auxiliary stream is fed the main stream's token, as the
authors' processor does), every layer's ``hook_attn_scores`` masks the anchored keys in rows ``B:`` (the minimum
float, as Hugging Face masks a token with attention_mask 0), and ``unembed.hook_out`` returns ``s'`` in both halves
(so a greedy generation loop picks the same next token for the copy, and its padding and end-of-sequence
bookkeeping sees one sequence). The cost is a second forward pass per step (the doubled batch), which is SPA's own work.
:func:`pasta_lens.generate` and :func:`pasta_lens.methods.run` do the doubling and keep rows ``:B``.

Differences from the original, pinned by ``tests/test_methods_parity.py``: the auxiliary prompt keeps the anchored
tokens' positions and blocks attention to them, where the original replaces the anchor text with a mask-token
string (shifting later positions) and masks that; ``max_v p_v`` is taken per row, where the original takes it over
the whole batch (which couples the rows of a batch); the original's ``nan_to_num`` of its inputs is not done.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from pasta_lens.kernels import HookFn, scores_hook_name
from pasta_lens.methods.common import HeadsArg, check_schedule, keys_mask, no_other_reader, prompt_mask
from pasta_lens.plan import ScheduleSpec
from pasta_lens.spans import Emphasis

DEFAULT_STRENGTH = 1.4
"""The authors' pipeline default ``anchoring_strength`` (with ``modulated_by_prob=True``)."""

EMBED_HOOK = "hook_embed"
LOGITS_HOOK = "unembed.hook_out"


def spa_batch(x: Int[Tensor, "batch pos"]) -> Int[Tensor, "two_batch pos"]:
    """The doubled batch SPA runs on: ``x`` stacked on itself (tokens or attention mask).

    Example:
        >>> logits = model(spa_batch(em.tokens))[: em.tokens.shape[0]]    # inside steer(..., method="spa")
    """
    return torch.cat([x, x], dim=0)


def combine(
    s: Float[Tensor, "... vocab"], s_aux: Float[Tensor, "... vocab"], strength: float, modulated: bool
) -> Float[Tensor, "... vocab"]:
    """SPA's logits from the main and auxiliary logits (fp32; see the module docstring)."""
    if abs(strength - 1.0) < 1e-4:
        return s
    if abs(strength) < 1e-4:
        return s_aux
    diff = s - s_aux
    base = strength - 1.0
    if modulated and (strength > 1 or strength < -1):
        p = torch.softmax(s, dim=-1).clamp(min=1e-6, max=1.0)
        weights = base / p.amax(dim=-1, keepdim=True) * p
        out = s + (weights * diff).clamp(min=-1e2, max=1e2)
    else:
        out = s + (base * diff).clamp(min=-1e3, max=1e3)
    return out.clamp(min=-1e3, max=1e3)


def _halves(act: Tensor) -> int:
    if act.shape[0] % 2:
        raise ValueError(
            f"SPA runs the prompt and its anchor-free copy in one batch, but this batch has "
            f"{act.shape[0]} rows: call model(pasta_lens.methods.spa_batch(tokens)) (and spa_batch of "
            "the attention mask), or use pasta_lens.generate / pasta_lens.methods.run, which do it."
        )
    return act.shape[0] // 2


def _sync_hook(act: Tensor, hook: Any) -> Tensor:
    b = _halves(act)
    out = act.clone()
    out[b:] = act[:b]
    return out


def _mask_hook(layer: int, mask: Tensor) -> HookFn:
    def hook(scores: Float[Tensor, "batch head query key"], hook: Any) -> Float[Tensor, "batch head query key"]:
        b = _halves(scores)
        span = keys_mask(mask, scores[:b], layer)  # [rows, key]
        out = scores if no_other_reader(scores, hook) else scores.clone()
        out[b:].masked_fill_(span[:, None, None, :], torch.finfo(scores.dtype).min)
        return out

    return hook


def _logits_hook(strength: float, modulated: bool) -> HookFn:
    def hook(logits: Float[Tensor, "batch pos vocab"], hook: Any) -> Float[Tensor, "batch pos vocab"]:
        b = _halves(logits)
        new = combine(logits[:b].float(), logits[b:].float(), strength, modulated).to(logits.dtype)
        # Both halves return s': a greedy loop then picks the same token for the copy as for the prompt, so the two
        # streams stay one sequence (the loop's padding / end-of-sequence handling included).
        return torch.cat([new, new], dim=0)

    return hook


def spa_hooks(
    model: Any,
    emphasis: Emphasis | Tensor,
    heads: HeadsArg = "all",
    *,
    strength: float = DEFAULT_STRENGTH,
    modulated: bool = True,
    schedule: ScheduleSpec = None,
    allow_transfer: bool = False,
) -> list[tuple[str, HookFn]]:
    """SPA hooks for a doubled batch (:func:`spa_batch`): the anchored tokens are the emphasised ones.

    Args:
        heads: must be ``"all"``: SPA hides the anchors from every head of the auxiliary pass.
        strength: the anchoring strength ``w`` (1 = no steering; > 1 amplifies the anchors; 0 ignores them).
        modulated: weight each vocabulary entry by its probability (the authors' ``modulated_by_prob``).
        schedule: only ``"all"``: the logits hook of a KV-cached step cannot tell which position it holds.

    Example:
        >>> with model.hooks(spa_hooks(model, em, strength=1.4)):
        ...     logits = model(spa_batch(em.tokens), attention_mask=spa_batch(em.attention_mask))[:1]
    """
    if not (isinstance(heads, str) and heads == "all"):
        raise ValueError("SPA contrasts the whole model with and without the anchors: heads must be 'all'.")
    try:
        strength = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"SPA's strength must be a number; got {strength!r}.") from None
    if strength != strength or abs(strength) == float("inf"):
        raise ValueError(f"SPA's strength must be finite; got {strength}.")
    if not isinstance(modulated, bool):
        raise ValueError(f"SPA's modulated must be True or False; got {modulated!r}.")
    check_schedule("spa", schedule, why="its logits hook cannot tell a KV-cached step's position")
    mask = prompt_mask(emphasis)
    if abs(strength - 1.0) < 1e-4:
        return []
    for point in (EMBED_HOOK, LOGITS_HOOK):
        if point not in getattr(model, "hook_dict", {}):
            raise ValueError(f"SPA needs the hook point {point!r}, which this model lacks.")
    return (
        [(EMBED_HOOK, _sync_hook)]
        + [(scores_hook_name(layer), _mask_hook(layer, mask)) for layer in range(int(model.cfg.n_layers))]
        + [(LOGITS_HOOK, _logits_hook(strength, modulated))]
    )
