"""``pasta-lens attention``: how much attention the emphasised span gets, per layer, without and with steering.

    pasta-lens attention "Previously, Toko Yasuda played the guitar. *Currently, Toko Yasuda plays the piano.* \\
        Toko Yasuda plays the" --out span.png --row-out row.png

prints, per layer, the attention mass that queries put on the span (mean over the heads of the layer and over
the query rows that can see the span; :func:`pasta_lens.analysis.attention_report`), unsteered and steered, and
optionally draws it (:func:`pasta_lens.plot.plot_span_attention`) and one steered head's last attention row
(:func:`pasta_lens.plot.plot_attention_row`).
"""

from __future__ import annotations

import argparse
from typing import Any

from pasta_lens.cli import add_prompt_command, check_prompt_arguments, parse_heads, parse_markers


def _cmd_attention(args: argparse.Namespace) -> int:
    from pasta_lens.analysis import attention_report
    from pasta_lens.models import load_model

    check_prompt_arguments(args)
    if args.row_head:
        parse_heads(args.row_head)
    model = load_model(args.model)
    heads = parse_heads(args.heads, model.cfg.n_heads) if args.heads else None
    row_head = parse_heads(args.row_head)[0] if args.row_head else None
    markers = parse_markers(args.markers)
    print(
        attention_report(
            model,
            args.text,
            heads,
            alpha=args.alpha,
            chat=args.chat,
            markers=markers,
            out=args.out,
            row_out=args.row_out,
            row_head=row_head,
        )
    )
    return 0


def add_parser(sub: Any) -> None:
    """Register ``attention`` on the ``pasta-lens`` sub-command parser."""
    p = add_prompt_command(
        sub,
        "attention",
        help="attention on the emphasised span per layer, unsteered vs steered",
        description="Print (and optionally plot) the attention mass on the marked span per "
        "layer, without and with PASTA steering.",
    )
    p.add_argument("--out", default=None, help="write the per-layer plot to this PNG (needs matplotlib)")
    p.add_argument("--row-out", default=None, help="write one steered head's last attention row to this PNG")
    p.add_argument("--row-head", default=None, help="LAYER:HEAD for --row-out (default: the first steered head)")
    p.set_defaults(func=_cmd_attention)
