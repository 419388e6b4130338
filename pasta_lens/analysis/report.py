"""All of it at a glance: the per-layer span attention, unsteered vs steered, as text and pictures.

:func:`attention_report` is the ``pasta-lens attention`` command: one steering plan (:func:`analysis_plan`),
measured with :func:`~pasta_lens.analysis.span_attention` and drawn with :mod:`pasta_lens.plot` (the span
attention per layer, and optionally one head's attention row).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from pasta_lens.analysis.inputs import analysis_plan
from pasta_lens.analysis.span import span_attention
from pasta_lens.plan import Head
from pasta_lens.steering import steer


def attention_report(
    model: Any,
    text: str,
    heads: Sequence[Head] | None = None,
    *,
    alpha: float | None = None,
    chat: bool = False,
    markers: str | tuple[str, str] = "*",
    out: str | os.PathLike | None = None,
    row_out: str | os.PathLike | None = None,
    row_head: Head | None = None,
) -> str:
    """The per-layer span-attention table as text; writes the pictures when ``out`` / ``row_out`` are given.

    Example:
        >>> print(attention_report(model, "Maria is a nurse. *Answer in JSON.*", chat=True, out="span.png"))
    """
    from pasta_lens.spans import emphasize

    em = emphasize(model, text, chat=chat, markers=markers)
    plan = analysis_plan(model, heads, alpha)  # resolved once: shown, measured and drawn with the same steering
    sa = span_attention(model, em, plan)
    before, after = sa.per_layer()
    lines = [plan.describe(), "layer  unsteered  steered   (attention on the span, mean over the layer's heads)"]
    for layer, (b, a) in enumerate(zip(before.tolist(), after.tolist())):
        lines.append(f"{layer:5d}  {b:9.3f}  {a:7.3f}" + ("   steered" if layer in sa.steered_layers else ""))
    if out is not None:
        from pasta_lens.plot import plot_span_attention

        plot_span_attention(before, after, out, steered_layers=sa.steered_layers)
        lines.append(f"wrote {out}")
    if row_out is not None:
        from pasta_lens.plot import plot_attention_row

        layer, head = row_head if row_head is not None else sa.heads[0]
        name = f"blocks.{layer}.attn.hook_pattern"
        with torch.inference_mode():
            _, cache = model.run_with_cache(em.tokens, names_filter=name)
            with steer(model, plan, em):
                _, steered = model.run_with_cache(em.tokens, names_filter=name)
        plot_attention_row(
            model.to_str_tokens(em.tokens[0]),
            cache[name][0, head, -1],
            steered[name][0, head, -1],
            em.key_mask[0],
            row_out,
            title=f"L{layer}H{head}, query = last token",
        )
        lines.append(f"wrote {row_out}")
    return "\n".join(lines)
