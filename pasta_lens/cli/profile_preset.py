"""``pasta-lens profile --preset quick``: a named bundle of profiling options, for a head set from a small sample.

A preset is nothing but defaults: :data:`QUICK` is a frozen :class:`Preset` that fills in every profiling option the
user did not type, and an option given on the command line always wins over the preset's value. It expands to

    --tasks counterfact,biasbios[,json,pronoun] --n 16 --method attribution
    --k auto --ks 2,4,8 --val-n 8 --select-by metric --strategies union
    --schedules prompt --fluency-floor 0.95

The tasks follow the model: CounterFact and BiasBios (plain text) for every model, plus JSON and Pronouns when the
tokenizer has a chat template (those tasks are chat prompts). Gradient attribution on 16 train examples per task
ranks the heads (one forward and backward each). Candidates are the union of the tasks' top-k (never empty, unlike
an intersection of small top-k sets), each steered on the prompt only (steering every row failed the fluency floor
at every k on Gemma 3 270M); k is chosen by the tasks' own metrics on 8 validation examples per task
(:func:`~pasta_lens.evaluation.metric_curve`) among candidates that keep >= 0.95 x the unsteered fluency. The floor
is the point: choosing k by the teacher-forced objective alone picks head sets that win CounterFact by repeating one
word. Aimed at <= 10 minutes for a model of <= 300M parameters on 2 idle CPU cores (``bench/quick_profile.py``
measures it; docs/profiling.md has the measurements).

With an explicit ``--k N`` the selection options (``--ks``, ``--val-n``, ``--select-by``, ``--strategies``,
``--schedules``, ``--fluency-floor``) are not filled in: nothing is chosen. The profile's ``provenance["preset"]``
records the preset's name, what it expanded to and which options the user overrode; its ``command`` is the
expanded command line (rerunning it repeats the run).

Example:
    >>> QUICK.expansion()
    '--tasks counterfact,biasbios (+json,pronoun with a chat template) --n 16 --method attribution ...'
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

PLAIN_DEFAULTS: dict[str, Any] = {
    "tasks": "json,pronoun,biasbios,counterfact",
    "n": 200,
    "method": "hybrid",
    "k": "auto",
    "ks": "3,5,10,15,20,30,40,60,80",
    "val_n": 20,
}
"""The defaults of ``pasta-lens profile`` without a preset (the parser's defaults are None so that an option the
user typed can be told from one they did not)."""

SELECTION_OPTIONS = ("ks", "val_n", "select_by", "strategies", "schedules", "fluency_floor")
"""Options that only mean something with ``--k auto``: a preset leaves them unset when the user fixes k."""


@dataclass(frozen=True)
class Preset:
    """A named bundle of ``pasta-lens profile`` defaults (each field is the option of the same name).

    Attributes:
        name: what ``--preset`` takes.
        base_tasks: tasks for every model (plain-text prompts).
        chat_tasks: tasks added when the model's tokenizer has a chat template.
        n, method, k, ks, val_n, select_by, strategies, schedules, fluency_floor: the options' values.
    """

    name: str
    base_tasks: tuple[str, ...]
    chat_tasks: tuple[str, ...]
    n: int
    method: str
    k: str
    ks: tuple[int, ...]
    val_n: int
    select_by: str
    strategies: tuple[str, ...]
    schedules: tuple[str, ...]
    fluency_floor: float

    def __post_init__(self) -> None:
        if not self.base_tasks:
            raise ValueError(f"Preset {self.name!r} needs at least one base task (e.g. counterfact).")
        if min(self.n, self.val_n, *self.ks) < 1:
            raise ValueError(f"Preset {self.name!r}: n, val_n and ks must be positive integers.")
        if self.k != "auto":
            raise ValueError(f"Preset {self.name!r}: k must be 'auto' (a preset chooses k on validation examples).")
        if not 0.0 <= self.fluency_floor <= 1.0:
            raise ValueError(f"Preset {self.name!r}: fluency_floor is a fraction in [0, 1]; got {self.fluency_floor}.")

    def options(self, chat: bool) -> dict[str, Any]:
        """The option values (as the parser would hold them) for a model with (``chat``) or without a template."""
        tasks = self.base_tasks + (self.chat_tasks if chat else ())
        values: dict[str, Any] = {
            "tasks": ",".join(tasks),
            "n": self.n,
            "method": self.method,
            "k": self.k,
            "ks": ",".join(map(str, self.ks)),
            "val_n": self.val_n,
            "select_by": self.select_by,
            "strategies": ",".join(self.strategies),
            "schedules": ",".join(self.schedules),
            "fluency_floor": self.fluency_floor,
        }
        return values

    def expansion(self) -> str:
        """The command-line options the preset stands for, as ``--help`` and the docs show them."""
        values = self.options(chat=False)
        tasks = values.pop("tasks")
        chat = f" (+{','.join(self.chat_tasks)} with a chat template)" if self.chat_tasks else ""
        rest = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in values.items())
        return f"--tasks {tasks}{chat} {rest}"


QUICK = Preset(
    name="quick",
    base_tasks=("counterfact", "biasbios"),
    chat_tasks=("json", "pronoun"),
    n=16,
    method="attribution",
    k="auto",
    ks=(2, 4, 8),
    val_n=8,
    select_by="metric",
    strategies=("union",),
    schedules=("prompt",),
    fluency_floor=0.95,
)

PRESETS: dict[str, Preset] = {QUICK.name: QUICK}


def typed_options(args: argparse.Namespace) -> list[str]:
    """The preset-covered options the user gave (those not None before :func:`apply_preset`)."""
    names = list(PLAIN_DEFAULTS) + [n for n in SELECTION_OPTIONS if n not in PLAIN_DEFAULTS]
    return [n for n in names if getattr(args, n, None) is not None]


def apply_preset(args: argparse.Namespace, chat: bool | None = None) -> argparse.Namespace:
    """Fill in every preset-covered option the user left unset (None): from ``--preset`` when given, else from
    :data:`PLAIN_DEFAULTS` (the selection options stay None: their own defaults apply). Idempotent.

    ``chat``: whether the model has a chat template, which decides the preset's tasks; None (the model is not
    loaded yet) leaves ``--tasks`` unset for :func:`apply_preset_tasks` to fill in after loading, and the checks
    before loading use the base tasks. Records ``args.preset_typed`` (options the user gave) the first time.

    Example:
        >>> args = build_parser().parse_args(["profile", "--preset", "quick", "--n", "40", "--out", "p.json"])
        >>> apply_preset(args, chat=False).n, args.method
        (40, 'attribution')
    """
    if not hasattr(args, "preset_typed"):
        args.preset_typed = typed_options(args)
    preset = PRESETS.get(getattr(args, "preset", None) or "")
    if preset is None:
        for name, value in PLAIN_DEFAULTS.items():
            if getattr(args, name, None) is None:
                setattr(args, name, value)
        return args
    fixed_k = args.k is not None and args.k != "auto"
    for name, value in preset.options(bool(chat)).items():
        if getattr(args, name, None) is not None:
            continue  # the user's option wins
        if name == "tasks" and chat is None:
            continue
        if fixed_k and name in SELECTION_OPTIONS:
            value = PLAIN_DEFAULTS.get(name)  # nothing is chosen with a fixed k
        setattr(args, name, value)
    return args


def pre_load_tasks(args: argparse.Namespace) -> str:
    """The tasks to check before the model loads: ``--tasks``, else the preset's base tasks."""
    if args.tasks is not None:
        return str(args.tasks)
    return ",".join(PRESETS[args.preset].base_tasks)


def apply_preset_tasks(args: argparse.Namespace, model: Any) -> str:
    """After loading: the preset's tasks for this model (its chat template decides), unless ``--tasks`` was given;
    returns ``args.tasks``."""
    if args.tasks is None:
        tokenizer = getattr(model, "tokenizer", None)
        apply_preset(args, chat=bool(getattr(tokenizer, "chat_template", None)))
    if not isinstance(args.tasks, str):
        raise ValueError("No --tasks and no --preset to choose them: give --tasks, e.g. --tasks counterfact,biasbios.")
    return args.tasks


def preset_provenance(args: argparse.Namespace) -> dict[str, Any]:
    """What a preset run records: ``{"preset": {"name", "expands_to", "overridden"}}`` (empty without a preset)."""
    preset = PRESETS.get(getattr(args, "preset", None) or "")
    if preset is None:
        return {}
    return {
        "preset": {
            "name": preset.name,
            "expands_to": preset.expansion(),
            "overridden": [f"--{n.replace('_', '-')}" for n in getattr(args, "preset_typed", [])],
        }
    }


def add_preset_argument(group: Any) -> None:
    """Register ``--preset`` (its help lists every preset and what it expands to)."""
    group.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=None,
        help="a named bundle of the options below, for a profile from a small sample; an option given explicitly "
        "overrides the preset's. " + "; ".join(f"{p.name}: {p.expansion()}" for p in PRESETS.values()),
    )


def check_preset(args: argparse.Namespace) -> None:
    """Before the model loads: a preset does not combine with ``--method learned``."""
    if getattr(args, "preset", None) and args.method == "learned":
        raise ValueError(
            f"--preset {args.preset} ranks heads by attribution and chooses k by the tasks' metrics; "
            "--method learned fits per-head strengths instead: drop one of them."
        )
