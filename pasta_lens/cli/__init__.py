"""The ``pasta-lens`` command line: one sub-command per job, each a thin layer over the Python API.

    pasta-lens steer "Maria is a nurse. *Answer in JSON.*" --chat --heads 20:0,20:3 --alpha 0.01

prints the unsteered and the steered generation one above the other. One module per command registers its
parser and holds its handler (:mod:`~pasta_lens.cli.steer`, :mod:`~pasta_lens.cli.attention`,
:mod:`~pasta_lens.cli.profile` with ``profile plot``, :mod:`~pasta_lens.cli.evaluate`,
:mod:`~pasta_lens.cli.transfer`); this module holds
:func:`main` and the argument helpers they share. The library never imports this package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from pasta_lens.models import DEFAULT_MODEL
from pasta_lens.plan import Head
from pasta_lens.schedule import Schedule


def parse_heads(spec: str, n_heads: int | None = None) -> tuple[Head, ...]:
    """Parse ``"20:0,20:3,21:5"`` (``"21:*"`` = every head of layer 21, needs ``n_heads``) into pairs."""
    pairs: list[Head] = []
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
                "every head of layer 21)"
            ) from None
    if not pairs:
        raise argparse.ArgumentTypeError("--heads is empty: give LAYER:HEAD pairs, e.g. 20:0,20:3")
    return tuple(pairs)


def parse_schedule(spec: str) -> Schedule:
    """``"prompt"`` / ``"first:4"`` / ``"decay:0.5"`` / ``"all"`` -> a :class:`~pasta_lens.schedule.Schedule`
    (an ``argparse`` type: a bad spec is a usage error naming the accepted forms)."""
    try:
        return Schedule.parse(spec)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_prompt_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments every prompt-steering sub-command shares: text, model, chat, heads, alpha, markers."""
    p.add_argument("text", help='prompt with the emphasised span marked, e.g. "Maria is a nurse. *Answer in JSON.*"')
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default: {DEFAULT_MODEL}, offline)")
    p.add_argument("--chat", action="store_true", help="render the model's chat template around the text")
    p.add_argument(
        "--heads",
        default=None,
        help="heads to steer as LAYER:HEAD pairs, e.g. 20:0,20:3 or 21:* (default: the model's "
        "default head set; the command prints which)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="factor on attention to non-emphasised prompt tokens, in (0, 1] (default: the profile's "
        "per-head alphas when it has them, else 0.01)",
    )
    p.add_argument("--markers", default="*", help="emphasis marker, or OPEN,CLOSE (e.g. '<em>,</em>')")


def check_prompt_arguments(args: argparse.Namespace) -> None:
    """Check the shared prompt arguments before the model loads (~20 s): alpha's range and the heads' syntax
    (their range needs the model's shape and is checked when steering)."""
    if args.alpha is not None:
        check_alpha(args.alpha)
    if args.heads:
        parse_heads(args.heads, n_heads=1)
    if not args.text.strip():
        raise ValueError(
            "The prompt text is empty; give the text with the span to emphasise marked, e.g. "
            '"Maria is a nurse. *Answer in JSON.*"'
        )


def add_prompt_command(sub: Any, name: str, help: str, description: str) -> argparse.ArgumentParser:
    """Register a prompt-steering sub-command with the arguments they all share (:func:`add_prompt_arguments`)."""
    p = sub.add_parser(name, help=help, description=description)
    add_prompt_arguments(p)
    return p


def parse_markers(spec: str) -> str | tuple[str, str]:
    """``"*"`` -> ``"*"``; ``"<em>,</em>"`` -> ``("<em>", "</em>")``."""
    if "," not in spec:
        return spec
    start, end = spec.split(",", 1)
    return start, end


def split_list(text: str) -> list[str]:
    """``"json, counterfact,"`` -> ``["json", "counterfact"]``: a comma list, blanks dropped."""
    return [s.strip() for s in text.split(",") if s.strip()]


def split_method_specs(text: str) -> list[str]:
    """A comma list of method specs, where a spec's own options are comma-separated too.

    A piece with ``=`` and no ``:`` is one more option of the spec before it, since method names never hold ``=``:
    ``"zero-shot,prism_delta:projections=p.st,gain=0.4"`` -> ``["zero-shot", "prism_delta:projections=p.st,gain=0.4"]``.

    Raises:
        ValueError: an option before any method (``"gain=0.4,pasta"``).
    """
    specs: list[str] = []
    for piece in split_list(text):
        if "=" in piece and ":" not in piece.split("=", 1)[0]:
            if not specs:
                raise ValueError(f"Option {piece!r} comes before any method; write it after one, e.g. pasta:{piece}.")
            specs[-1] += f",{piece}"
        else:
            specs.append(piece)
    return specs


def int_list(text: str) -> list[int]:
    """``"3,5,10"`` -> ``[3, 5, 10]``: positive integers, comma-separated (an ``argparse`` type: anything else is a
    usage error that shows the form)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 3,5,10,20; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, e.g. 3,5,10,20; got {text!r}")
    return values


def add_placement_arguments(p: argparse.ArgumentParser) -> None:
    """Where the model goes: one device per process (the torchrun default), or one model split over devices."""
    p.add_argument(
        "--device",
        default=None,
        help="device for the model (default: this process's GPU, cuda:LOCAL_RANK, when CUDA is available, else cpu)",
    )
    p.add_argument(
        "--device-map",
        default=None,
        help="split a model too large for one device: auto or balanced (Hugging Face's dispatcher; one process only)",
    )
    p.add_argument("--n-devices", type=int, default=None, help="split the model over this many GPUs (one process only)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="parameter dtype (default float32; steering arithmetic is fp32 either way)",
    )


def load_model_for(args: argparse.Namespace) -> Any:
    """:func:`pasta_lens.load_model` with the placement arguments of :func:`add_placement_arguments`."""
    import torch

    from pasta_lens.distributed import current_world, local_device
    from pasta_lens.models import load_model

    split = args.device_map is not None or args.n_devices is not None
    if split and current_world().size > 1:
        raise ValueError(
            "--device-map / --n-devices split one model over the GPUs one process sees; under "
            "torchrun every process would claim the same GPUs. Run one process "
            "(python -m pasta_lens.cli ...), or use one GPU per process (--device, the default)."
        )
    dtype = getattr(torch, args.dtype)
    if split:
        return load_model(args.model, dtype=dtype, device_map=args.device_map, n_devices=args.n_devices)
    return load_model(args.model, dtype=dtype, device=args.device or local_device())


def build_parser() -> argparse.ArgumentParser:
    from pasta_lens.cli import (  # the commands import this module's helpers
        attention,
        evaluate,
        profile,
        steer,
        transfer,
    )

    parser = argparse.ArgumentParser(
        prog="pasta-lens",
        description=(
            "PASTA attention steering on TransformerLens models. Mark the span to attend to with *asterisks*."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (steer, profile, evaluate, attention, transfer):
        command.add_parser(sub)
    return parser


# What Ctrl-C says per command: where the finished work is kept, so that rerunning the same command resumes.
RESUME_NOTES = {
    "profile": "finished examples are kept in the per-task checkpoints (OUT.ckpt/ or --checkpoint-dir); rerun the "
    "same command to resume",
    "evaluate": "finished rows are kept in OUT/examples.jsonl; rerun the same command to resume",
    "transfer": "finished rows are kept in OUT/full and OUT/without-<task>; rerun the same command to resume",
}


def check_alpha(alpha: float, option: str = "--alpha") -> float:
    """``alpha`` in (0, 1] (1 = no steering), else a ValueError naming the option."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(
            f"{option} must be in (0, 1] (the factor on attention outside the span; 1 = no steering); got {alpha}."
        )
    return alpha


def read_profile(spec: str, option: str = "profile") -> Any:
    """``load_profile(spec)``, with a file that is JSON but not a profile reported as a ValueError naming it."""
    from pasta_lens.registry import load_profile

    try:
        return load_profile(spec)
    except (TypeError, KeyError, AttributeError) as err:  # e.g. "heads": null, a list at top level
        raise ValueError(
            f"{option} {spec}: not a readable head profile ({type(err).__name__}: {err}). Check the "
            "file (it must be written by HeadProfile.save), or give a shipped profile name."
        ) from None


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command: its errors become one line ``pasta-lens: error: ...`` and exit code 2, Ctrl-C one
    line saying how to resume and exit code 130, never a traceback."""
    from pasta_lens.io import LockedError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        note = RESUME_NOTES.get(args.command if getattr(args, "profile_command", None) is None else "", "")
        print(f"pasta-lens {args.command}: interrupted" + (f"; {note}." if note else "."), file=sys.stderr)
        return 130
    except (ValueError, ImportError, FileNotFoundError, LockedError, argparse.ArgumentTypeError) as err:
        print(f"pasta-lens: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch

    from pasta_lens.distributed import process_group_from_env

    threads = torch.get_num_threads()  # --threads sets torch's process-wide count for this command only
    try:
        with process_group_from_env():  # under torchrun: one process group for the command (gloo on CPU)
            return run_command(args)
    finally:
        torch.set_num_threads(threads)  # a caller of main() in-process (a test, a notebook) keeps its own


if __name__ == "__main__":
    sys.exit(main())
