"""Can this model be steered through ``hook_pattern``? The hook point must exist, and editing it must matter.

PASTA edits ``blocks.{L}.attn.hook_pattern``. That steers only if (1) every steered layer has that hook point and
(2) the layer's attention output is computed *from* the hooked pattern. Neither holds for every model:
TransformerLens' bridge has no ``hook_pattern`` on some architectures (gemma3n / gemma4 before its PR #1673), and
for others it fires the hook *after* the wrapped Hugging Face module has already computed the output, so an edit
is discarded (the bridge before its PR #1740; GPT-J and GPT-Neo on the 3.9 and 4.3 bridges, measured:
``docs/architectures.md``). A discarded edit raises nothing: the run is simply unsteered.

:func:`require_hook_points` checks (1) from the model's hook names (free; :func:`pasta_lens.steer` calls it).
:func:`pattern_edit_effects` measures (2) with one forward pass over a short probe text, batch rows
``0..n``: row 0 is unedited and row ``i`` replaces layer ``L_i``'s pattern (every head) by

    P'[q, k] = (I[q, k] + U[q, k]) / 2,   I: the query's own key,  U: uniform over the keys the row may see

Layers before ``L_i`` see the same input in both rows, so row ``i``'s logits differ from row 0's if and only if the
edit at ``L_i`` reached the output (``P'`` differs from any real pattern, which is neither all-self nor uniform).
:func:`check_steerable` runs both and raises a ``ValueError`` that names the layers and the fix;
:func:`pasta_lens.load_model` calls it on every model it loads.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from pasta_lens.kernels import pattern_hook_name, scores_hook_name

PROBE_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs home."
"""The probe's text: a dozen ordinary tokens on any tokenizer."""

MIN_EFFECT = 1e-3
"""Smallest change of the logits (relative to their largest magnitude) that counts as "the edit took effect".
A discarded edit leaves the rows identical (0); a real one changes them by ~1e-2 to 1."""

FIX_MISSING = (
    "Load the model with eager attention (attn_implementation='eager'), or a TransformerLens version "
    "whose bridge exposes hook_pattern for this architecture (TransformerLens added it for gemma3n / "
    "gemma4 in its PR #1673), or backend='hooked' (TransformerLens 3.x) if it supports the family."
)
FIX_IGNORED = (
    "TransformerLens fires hook_pattern after the wrapped Hugging Face attention has computed its "
    "output, so an edit is discarded. Load the model as a HookedTransformer (backend='hooked', "
    "TransformerLens 3.x), whose attention is computed from the hooked pattern, or a TransformerLens "
    "version whose bridge computes this architecture's attention itself."
)


def hook_names(where: str = "pattern") -> Any:
    """The hook-name function for ``where``: ``"pattern"`` (``hook_pattern``) or ``"scores"``."""
    if where not in ("pattern", "scores"):
        raise ValueError(f"where must be 'pattern' or 'scores'; got {where!r}.")
    return pattern_hook_name if where == "pattern" else scores_hook_name


def missing_hook_points(model: Any, layers: Iterable[int], where: str = "pattern") -> list[int]:
    """The layers among ``layers`` whose ``hook_pattern`` (or ``hook_attn_scores``) the model does not have."""
    points = getattr(model, "hook_dict", None)
    if points is None:
        return sorted(set(int(layer) for layer in layers))
    name = hook_names(where)
    return sorted({int(layer) for layer in layers if name(int(layer)) not in points})


def require_hook_points(model: Any, layers: Iterable[int], where: str = "pattern") -> None:
    """Raise ``ValueError`` naming the fix unless every layer of ``layers`` has the hook point steering edits.

    Example:
        >>> require_hook_points(model, [20, 21])      # silent on SmolLM2
    """
    missing = missing_hook_points(model, layers, where)
    if missing:
        name = hook_names(where)(missing[0])
        raise ValueError(
            f"This model has no {name} (nor the {where} hook of layers {missing}), where PASTA "
            f"edits the attention: {type(model).__name__} does not expose this architecture's "
            f"attention pattern. {FIX_MISSING}"
        )


def _probe_edit(pattern: Float[Tensor, "batch head query key"]) -> Float[Tensor, "batch head query key"]:
    """``(I + U) / 2`` on the keys each row may see (a key is visible when its attention is not exactly 0)."""
    n_q, n_k = pattern.shape[-2], pattern.shape[-1]
    own = torch.zeros(n_q, n_k, dtype=torch.float32, device=pattern.device)
    own[torch.arange(n_q), torch.arange(n_k - n_q, n_k)] = 1.0  # query row i is key position K - Q + i
    visible = ((pattern != 0).float() + own).clamp(max=1.0)
    uniform = visible / visible.sum(-1, keepdim=True)
    return ((own + uniform) / 2).to(pattern.dtype).expand_as(pattern)


def pattern_edit_effects(model: Any, layers: Iterable[int] | None = None) -> dict[int, float]:
    """Per layer: how much replacing its ``hook_pattern`` changes the logits (relative; 0 = the edit is ignored).

    One forward pass over :data:`PROBE_TEXT` with ``1 + len(layers)`` batch rows (see the module docstring);
    nothing of the model changes. ``layers`` defaults to all of them.

    Example:
        >>> effects = pattern_edit_effects(model)          # {0: 0.41, 1: 0.37, ...}
    """
    layers = sorted(set(range(int(model.cfg.n_layers)) if layers is None else (int(x) for x in layers)))
    require_hook_points(model, layers)
    tokens = model.to_tokens(PROBE_TEXT)
    batch = tokens.expand(1 + len(layers), -1)

    def make_hook(row: int):
        def hook(pattern: Tensor, hook: Any) -> Tensor:
            edited = pattern.clone()
            edited[row] = _probe_edit(pattern[row : row + 1])[0]
            return edited

        return hook

    hooks = [(pattern_hook_name(layer), make_hook(i + 1)) for i, layer in enumerate(layers)]
    with torch.inference_mode(), warnings.catch_warnings():
        # A bridge that discards the edit may warn about it; the probe reports it itself.
        warnings.simplefilter("ignore", UserWarning)
        logits = model.run_with_hooks(batch, fwd_hooks=hooks).float()
    scale = float(logits[0].abs().max().clamp_min(1e-12))
    return {layer: float((logits[i + 1] - logits[0]).abs().max()) / scale for i, layer in enumerate(layers)}


def check_steerable(model: Any, layers: Iterable[int] | None = None) -> None:
    """Raise ``ValueError`` naming the fix unless PASTA's edit of ``hook_pattern`` takes effect in ``layers``.

    Checks that the hook points exist (:func:`require_hook_points`) and that editing them changes the output
    (:func:`pattern_edit_effects`, one forward pass). :func:`pasta_lens.load_model` runs it on every model it
    loads; call it once on a model you booted yourself.

    Raises:
        ValueError: a layer has no ``hook_pattern``, or editing it does not change the output.

    Example:
        >>> check_steerable(TransformerBridge.boot_transformers("EleutherAI/gpt-j-6b"))
        ValueError: Editing blocks.0.attn.hook_pattern does not change this model's output ...
    """
    effects = pattern_edit_effects(model, layers)
    ignored = [layer for layer, effect in effects.items() if effect < MIN_EFFECT]
    if ignored:
        raise ValueError(
            f"Editing {pattern_hook_name(ignored[0])} does not change this model's output (nor in "
            f"layers {ignored}; largest relative change {max(effects[x] for x in ignored):.1e}), so "
            f"PASTA would leave {type(model).__name__} silently unsteered. {FIX_IGNORED}"
        )
