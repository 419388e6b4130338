"""Looking inside a steered model: span attention, head-output patching, direct logit effects.

Steering is a set of hooks, so it composes with TransformerLens' interpretability tools. Three questions and
the numbers that answer them:

1. **Does steering move attention onto the span?** :func:`span_attention` runs the model twice (unsteered,
   steered), caches only ``blocks.L.attn.hook_pattern`` and reports, per ``(layer, head)``, the attention mass
   on the emphasised keys averaged over query rows::

       mass[l, h] = mean_{b, q in Q_b} sum_{k in E_b} A_lh[b, q, k]

   where ``E_b`` are row b's emphasised keys and ``Q_b`` its real (non-padding) query positions from the
   first emphasised token on (earlier queries cannot see the span under causal attention, so they would only
   add zeros to the mean).

2. **Which steered heads carry the effect?** :func:`patch_steered_heads` does activation patching on the
   heads' outputs ``blocks.L.attn.hook_z[:, :, h]`` between the unsteered and the steered run, with
   TransformerLens' own ``transformer_lens.patching.generic_activation_patch`` (it works on the
   ``TransformerBridge``). For a metric ``m`` (e.g. ``log P(new) - log P(old)``) and ``effect = m_steered -
   m_unsteered``::

       recovered[h] = (m(unsteered run, head h's steered z patched in) - m_unsteered) / effect   (sufficiency)
       removed[h]   = (m_steered - m(steered run, head h's unsteered z patched in)) / effect     (necessity)

   :func:`cumulative_patching` patches the k best heads jointly (``head_patch_hooks``; TL's utility patches
   one index at a time) and gives the curve metric vs k: k = 0 is the unsteered run, all steered heads give
   exactly the steered run.

3. **What does a head write towards the answer?** :func:`direct_logit_effect` projects each head's output at
   the answer position through the final norm (with the cached, frozen scale) and the unembedding onto the
   direction ``W_U[:, answer] - W_U[:, contrast]``: the head's *direct* contribution to the logit difference.

4. **All of it at a glance:** :func:`attention_report` (the ``pasta-lens attention`` command) prints the
   per-layer span attention unsteered vs steered and optionally draws it and one head's attention row.

All runs use ``torch.inference_mode()``; nothing here changes the model. One module per question:
:mod:`~pasta_lens.analysis.span`, :mod:`~pasta_lens.analysis.patching`, :mod:`~pasta_lens.analysis.logit_effects`,
:mod:`~pasta_lens.analysis.report`; :mod:`~pasta_lens.analysis.inputs` holds what they share (prompts, metrics,
the steering plan). Everything is importable from ``pasta_lens.analysis``.
"""

from pasta_lens.analysis.inputs import Metric, Prompt, analysis_plan, prompt_inputs
from pasta_lens.analysis.logit_effects import direct_logit_effect, logit_direction
from pasta_lens.analysis.patching import HeadPatching, cumulative_patching, head_patch_hooks, patch_steered_heads
from pasta_lens.analysis.report import attention_report
from pasta_lens.analysis.span import SpanAttention, span_attention, span_mass

__all__ = [
    "HeadPatching",
    "Metric",
    "Prompt",
    "SpanAttention",
    "analysis_plan",
    "attention_report",
    "cumulative_patching",
    "direct_logit_effect",
    "head_patch_hooks",
    "logit_direction",
    "patch_steered_heads",
    "prompt_inputs",
    "span_attention",
    "span_mass",
]
