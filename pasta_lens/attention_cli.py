"""``pasta-lens attention``: how much attention the emphasised span gets, per layer, without and with steering.

    pasta-lens attention "Previously, Toko Yasuda played the guitar. *Currently, Toko Yasuda plays the piano.* \\
        Toko Yasuda plays the" --out span.png --row-out row.png

prints, per layer, the attention mass that queries put on the span (mean over the heads of the layer and over
the query rows that can see the span; :func:`pasta_lens.analysis.span_attention`), unsteered and steered, and
optionally draws it (:func:`pasta_lens.plot.plot_span_attention`) and one steered head's last attention row
(:func:`pasta_lens.plot.plot_attention_row`).
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional, Sequence, Union

import torch

from pasta_lens.steering import Head, steer


def attention_report(
    model: Any,
    text: str,
    heads: Optional[Sequence[Head]] = None,
    *,
    alpha: float = 0.01,
    chat: bool = False,
    markers: Union[str, tuple[str, str]] = "*",
    out: Union[str, os.PathLike, None] = None,
    row_out: Union[str, os.PathLike, None] = None,
    row_head: Optional[Head] = None,
) -> str:
    """The per-layer span-attention table as text; writes the pictures when ``out`` / ``row_out`` are given.

    Example:
        >>> print(attention_report(model, "Maria is a nurse. *Answer in JSON.*", chat=True, out="span.png"))
    """
    from pasta_lens.analysis import span_attention
    from pasta_lens.spans import emphasize

    em = emphasize(model, text, chat=chat, markers=markers)
    sa = span_attention(model, em, heads, alpha=alpha)
    before, after = sa.per_layer()
    lines = [f"heads steered: {len(sa.heads)}   alpha: {alpha}",
             "layer  unsteered  steered   (attention on the span, mean over the layer's heads)"]
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
            with steer(model, sa.heads, em, alpha):
                _, steered = model.run_with_cache(em.tokens, names_filter=name)
        plot_attention_row(model.to_str_tokens(em.tokens[0]), cache[name][0, head, -1], steered[name][0, head, -1],
                           em.key_mask[0], row_out, title=f"L{layer}H{head}, query = last token")
        lines.append(f"wrote {row_out}")
    return "\n".join(lines)


def _cmd_attention(args: argparse.Namespace) -> int:
    from pasta_lens.cli import parse_heads, parse_markers
    from pasta_lens.models import load_model

    model = load_model(args.model)
    heads = parse_heads(args.heads, model.cfg.n_heads) if args.heads else None
    row_head = parse_heads(args.row_head)[0] if args.row_head else None
    markers = parse_markers(args.markers)
    print(attention_report(model, args.text, heads, alpha=args.alpha, chat=args.chat, markers=markers,
                           out=args.out, row_out=args.row_out, row_head=row_head))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``attention`` on the ``pasta-lens`` sub-command parser."""
    from pasta_lens.cli import add_prompt_arguments  # cli imports this module lazily: no cycle at import time

    p = sub.add_parser("attention", help="attention on the emphasised span per layer, unsteered vs steered",
                       description="Print (and optionally plot) the attention mass on the marked span per layer, "
                                   "without and with PASTA steering.")
    add_prompt_arguments(p)
    p.add_argument("--out", default=None, help="write the per-layer plot to this PNG (needs matplotlib)")
    p.add_argument("--row-out", default=None, help="write one steered head's last attention row to this PNG")
    p.add_argument("--row-head", default=None, help="LAYER:HEAD for --row-out (default: the first steered head)")
    p.set_defaults(func=_cmd_attention)
