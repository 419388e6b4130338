"""The ``pasta-lens`` command line: one sub-command per job, each a thin layer over the Python API.

    pasta-lens steer "Maria is a nurse. *Answer in JSON.*" --chat --heads 20:0,20:3 --alpha 0.01

prints the unsteered and the steered generation one above the other.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence, Union

from pasta_lens import profiling_cli
from pasta_lens.models import DEFAULT_MODEL
from pasta_lens.steering import Head


def parse_heads(spec: str, n_heads: int | None = None) -> tuple[Head, ...]:
    """Parse ``"20:0,20:3,21:5"`` (``"21:*"`` = every head of layer 21, needs ``n_heads``) into pairs."""
    pairs = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        layer, sep, head = item.partition(":")
        try:
            if not sep:
                raise ValueError
            if head == "*":
                if n_heads is None:
                    raise ValueError
                pairs.extend((int(layer), h) for h in range(n_heads))
            else:
                pairs.append((int(layer), int(head)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad head {item!r}: use LAYER:HEAD pairs separated by commas, e.g. 20:0,20:3 (or 21:* for "
                "every head of layer 21)") from None
    if not pairs:
        raise argparse.ArgumentTypeError("--heads is empty: give LAYER:HEAD pairs, e.g. 20:0,20:3")
    return tuple(pairs)


def _cmd_steer(args: argparse.Namespace) -> int:
    from pasta_lens.generation import default_heads, generate
    from pasta_lens.models import load_model

    model = load_model(args.model)
    if args.heads:
        heads, source = parse_heads(args.heads, model.cfg.n_heads), "--heads"
    else:
        heads, source = default_heads(model)
    common = dict(chat=args.chat, markers=parse_markers(args.markers), max_new_tokens=args.max_new_tokens)
    unsteered = generate(model, args.text, **common, steered=False)
    steered = generate(model, args.text, heads, alpha=args.alpha, scale_position=args.scale_position, **common)
    print(f"model: {args.model}   heads: {len(heads)} ({source})   alpha: {args.alpha}")
    print("=== unsteered ===")
    print(unsteered)
    print("=== steered ===")
    print(steered)
    return 0


def add_prompt_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments every prompt-steering sub-command shares: text, model, chat, heads, alpha, markers."""
    p.add_argument("text", help='prompt with the emphasised span marked, e.g. "Maria is a nurse. *Answer in JSON.*"')
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default: {DEFAULT_MODEL}, offline)")
    p.add_argument("--chat", action="store_true", help="render the model's chat template around the text")
    p.add_argument("--heads", default=None,
                   help="heads to steer as LAYER:HEAD pairs, e.g. 20:0,20:3 or 21:* (default: the model's "
                        "default head set; the command prints which)")
    p.add_argument("--alpha", type=float, default=0.01,
                   help="factor on attention to non-emphasised prompt tokens, in (0, 1] (default 0.01)")
    p.add_argument("--markers", default="*", help="emphasis marker, or OPEN,CLOSE (e.g. '<em>,</em>')")


def parse_markers(spec: str) -> Union[str, tuple[str, str]]:
    """``"*"`` -> ``"*"``; ``"<em>,</em>"`` -> ``("<em>", "</em>")``."""
    return tuple(spec.split(",", 1)) if "," in spec else spec  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pasta-lens", description=(
        "PASTA attention steering on TransformerLens models. Mark the span to attend to with *asterisks*."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("steer", help="generate with and without steering and print both",
                       description="Greedy generation without and with PASTA steering, printed one above "
                                   "the other.")
    add_prompt_arguments(p)
    p.add_argument("--scale-position", choices=("exclude", "include"), default="exclude",
                   help="exclude: down-weight keys outside the span (PASTA); include: down-weight the span")
    p.add_argument("--max-new-tokens", type=int, default=40, help="tokens to generate (default 40)")
    p.set_defaults(func=_cmd_steer)
    profiling_cli.add_parser(sub)
    from pasta_lens.evaluation import add_evaluate_parser  # pasta-lens evaluate
    add_evaluate_parser(sub)
    from pasta_lens.attention_cli import add_parser as add_attention_parser  # pasta-lens attention
    add_attention_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, ImportError, FileNotFoundError, argparse.ArgumentTypeError) as err:
        print(f"pasta-lens {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
