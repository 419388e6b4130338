"""The transfer goals' verdicts, computed from the ``summary.json`` files that ``pasta-lens evaluate`` writes.

    .venv/bin/python scripts/transfer_goals.py --runs results/transfer/test/* \\
        --candidate pasta@new-default --previous pasta@previous-default --random random@new-default \\
        --out results/transfer/goals.md

Every number is read from a run folder's ``summary.json`` (``tasks[TASK][METHOD]``: the mean, ``n_<metric>``,
``ci95_<metric>`` and ``n``; ``config``: ``split``, ``seed``, ``model``, ``variant`` and ``task_data``, where the bio
tasks record ``"implied"`` for implied biographies). Four methods ("roles") are compared: the unsteered reference
(``--unsteered``, default ``zero-shot``), the candidate default (``--candidate``), the previous default
(``--previous``) and random heads of the candidate's size (``--random``, shown as a control; no goal reads it). A
role is ``METHOD`` or ``METHOD@PATTERN``, ``PATTERN`` an fnmatch pattern of the run folder's name or path (two
runs with ``pasta`` rows, one per profile, are told apart by their folders); a (task, role) found in two runs is an
error. No model is run.

Refusals (an error that names the fix, never a silent mix): a cell whose summary ran on another split than test,
a bio task (json, pronoun, biasbios) on other biographies than ``--bios`` (default implied), a cell with n < 200
(unless ``--allow-small-n``: then every verdict that reads it says "n = X < 200: not a verdict"), and cells of one
task whose n, seed, variant or model differ (they would compare different examples). A summary without a
``config`` (written by something other than ``evaluate``) is refused too.

The goals, each judged on the point estimates unless said otherwise (``u``: unsteered, ``c``: candidate, ``p``:
previous default; rates as fractions):

* JSON on implied bios, format: ``c.f_acc_strict >= 0.80`` (the first ``{`` opens a non-empty object that
  parses whole).
* JSON on implied bios, content: ``c.p_acc_strict >= u.occupation_named - 0.05`` (the occupation in the object
  against the unsteered model's rate of naming it anywhere in its answer, as whole words).
* General instructions, held-out types (the test split's instruction types are seen by no profile):
  ``c.prompt_loose_attempt >= u.prompt_loose_attempt + 0.10`` (prompt-level loose accuracy counted only on
  answers that are a fluent, on-topic attempt: the task's headline; ``prompt_loose`` is shown beside it).
* Content probe (context_qa): ``c.correct >= 0.95 * u.correct``.
* Pronouns on implied bios: ``c.a_acc_rewrite >= u.a_acc_rewrite + 0.10`` (fluent A.Acc counted only on answers
  that keep >= 50% of the bio's content words and contain a they-form).
* CounterFact ES, CounterFact PS, BiasBios Acc, no worse than the previous default within the intervals: the
  candidate's 95% upper bound ``>= p``'s point estimate (``c.ci95[1] >= p``).
* Fluency within 5% of zero-shot, for every task whose summary reports fluency (instructions, pronoun,
  counterfact): ``|c.fluency / u.fluency - 1| <= 0.05``.

A verdict is "met", "not met", or "no data" when a summary, a row or a metric it needs is missing (never met by
default). Comparisons allow 1e-9 for floating-point rounding.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pasta_lens.io import atomic_write_text

MIN_N = 200
EPS = 1e-9
ROLES = ("unsteered", "candidate", "previous", "random")
ROLE_LABELS = {
    "unsteered": "unsteered",
    "candidate": "candidate default",
    "previous": "previous default",
    "random": "random heads (control)",
}
SHOWN: dict[str, tuple[str, ...]] = {
    "json": ("f_acc_strict", "p_acc_strict", "occupation_named", "f_acc", "p_acc"),
    "instructions": ("prompt_loose_attempt", "prompt_loose", "inst_loose", "fluency"),
    "context_qa": ("correct", "format", "both"),
    "pronoun": ("a_acc_rewrite", "rewrite", "a_acc_fluent", "fluency"),
    "counterfact": ("es", "ps", "fluency"),
    "biasbios": ("acc",),
}
"""The tasks the goals read, and the metrics shown for each (summary keys)."""
BIO_TASKS = ("json", "pronoun", "biasbios")
FLUENCY_TASKS = tuple(t for t, metrics in SHOWN.items() if "fluency" in metrics)


@dataclass(frozen=True)
class Role:
    """Which rows a role reads: the method name in the summaries, and an optional run-folder pattern."""

    name: str
    method: str
    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.name not in ROLES:
            raise ValueError(f"Role {self.name!r}: use one of {ROLES}.")
        if not self.method:
            raise ValueError(f"--{self.name}: give a method name, e.g. 'pasta' or 'pasta@FOLDER'.")

    @classmethod
    def parse(cls, name: str, spec: str) -> Role:
        """``"pasta@new-*"`` -> ``Role(name, "pasta", "new-*")``.

        Example:
            >>> Role.parse("candidate", "pasta@new-default").pattern
            'new-default'
        """
        method, _, pattern = spec.partition("@")
        return cls(name, method.strip(), pattern.strip() or None)

    def matches(self, folder: Path) -> bool:
        if self.pattern is None:
            return True
        return fnmatch.fnmatch(folder.name, self.pattern) or fnmatch.fnmatch(folder.as_posix(), self.pattern)


@dataclass(frozen=True)
class Run:
    """One run folder's summary."""

    folder: Path
    summary: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return self.summary["config"]


@dataclass(frozen=True)
class Cell:
    """The row of one (task, role): its summary entry and the config it ran under."""

    task: str
    role: Role
    run: Run

    @property
    def entry(self) -> dict[str, Any]:
        return self.run.summary["tasks"][self.task][self.role.method]

    @property
    def n(self) -> int:
        return int(self.entry["n"])

    @property
    def data(self) -> str | None:
        return self.run.config.get("task_data", {}).get(self.task)

    def value(self, key: str) -> Any:
        return self.entry.get(key)

    def count(self, key: str) -> int:
        """How many examples the number ``key`` (a metric or its ``ci95_``) averages: ``n_<metric>``, else ``n``."""
        metric = key.removeprefix("ci95_")
        return int(self.entry.get(f"n_{metric}", self.n))

    def where(self) -> str:
        return f"{self.run.folder}/summary.json, {self.task} / {self.role.method}"


@dataclass(frozen=True)
class Verdict:
    """One goal: its rule, what was measured, and ``status`` ("met", "not met", "no data", or "n = X < 200: not a
    verdict")."""

    goal: str
    rule: str
    measured: str
    status: str


def load_runs(folders: Sequence[str | Path]) -> tuple[list[Run], list[str]]:
    """The runs of ``folders`` (each a run folder or its ``summary.json``) and a note per folder without a summary.

    Raises:
        ValueError: a summary with no ``config`` (not written by ``pasta-lens evaluate``).
    """
    runs, skipped = [], []
    for given in folders:
        path = Path(given)
        if path.is_file() and path.name != "summary.json":
            skipped.append(f"{path}: not a run folder")
            continue
        path = path if path.name == "summary.json" else path / "summary.json"
        if not path.is_file():
            skipped.append(f"{path.parent}: no summary.json (a run not finished or not started)")
            continue
        summary = json.loads(path.read_text())
        if not isinstance(summary.get("config"), dict) or "tasks" not in summary:
            raise ValueError(
                f"{path} has no config (it was not written by `pasta-lens evaluate`): the split, bios and seed "
                "it ran on are unknown. Rerun it with `pasta-lens evaluate ... --out FOLDER`."
            )
        runs.append(Run(path.parent, summary))
    return runs, skipped


def find_cells(runs: Sequence[Run], roles: Sequence[Role]) -> dict[tuple[str, str], Cell]:
    """``{(task, role name): Cell}`` for every task of :data:`SHOWN` and role found in ``runs``.

    Raises:
        ValueError: a (task, role) found in more than one run (qualify the role with ``@FOLDER``).
    """
    cells = {}
    for role in roles:
        for task in SHOWN:
            hits = [r for r in runs if role.matches(r.folder) and role.method in r.summary["tasks"].get(task, {})]
            if len(hits) > 1:
                raise ValueError(
                    f"{task} / {role.method} (--{role.name}) is in {len(hits)} runs: "
                    + ", ".join(str(r.folder) for r in hits)
                    + f". Name the run: --{role.name} {role.method}@FOLDER_NAME."
                )
            if hits:
                cells[(task, role.name)] = Cell(task, role, hits[0])
    return cells


def check_cells(cells: dict[tuple[str, str], Cell], bios: str, allow_small_n: bool = False) -> None:
    """Refuse cells the goals cannot read (see the module docstring); ``bios``: ``"implied"`` or ``"named"``.

    Raises:
        ValueError: naming the cell and the fix.
    """
    want_data = "implied" if bios == "implied" else None
    for cell in cells.values():
        split = cell.run.config.get("split")
        if split != "test":
            raise ValueError(
                f"{cell.where()} ran on split {split!r}; the goals are judged on test. Rerun evaluate with "
                "--split test (choose on validation, report on test)."
            )
        if cell.task in BIO_TASKS and cell.data != want_data:
            raise ValueError(
                f"{cell.where()} ran on {cell.data or 'named (or loaded)'} biographies; the goals need "
                f"--bios {bios}. Rerun evaluate with --bios {bios}."
            )
        if cell.n < MIN_N and not allow_small_n:
            raise ValueError(
                f"{cell.where()} has n = {cell.n} < {MIN_N}. Rerun evaluate with --n {MIN_N} --split test, or pass "
                "--allow-small-n for a table whose verdicts say 'not a verdict'."
            )
    for task in SHOWN:
        mine = [c for c in cells.values() if c.task == task]
        for key, get in (
            ("n", lambda c: c.n),
            ("seed", lambda c: c.run.config.get("seed")),
            ("variant", lambda c: c.run.config.get("variant")),
            ("model", lambda c: c.run.config.get("model")),
        ):
            if len({get(c) for c in mine}) > 1:
                fix = "rerun them on one model" if key == "model" else f"rerun them with the same --{key}"
                raise ValueError(
                    f"The {task} rows differ in {key} ("
                    + "; ".join(f"{c.role.name} {c.role.method} in {c.run.folder}: {get(c)}" for c in mine)
                    + f"): they would compare different examples; {fix}."
                )


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def format_value(cell: Cell | None, metric: str) -> str:
    """``"85.0 [79.4, 89.3]"`` (rates in %, fluency in bits), as the summary carries it; ``"–"`` when missing.

    Example:
        >>> format_value(None, "acc")
        '–'
    """
    value = None if cell is None else cell.value(metric)
    if value is None:
        return "–"
    fmt = (lambda x: f"{x:.2f}") if metric == "fluency" else _pct
    ci = cell.value(f"ci95_{metric}")
    return f"{fmt(value)} [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else fmt(value)


def tables(cells: dict[tuple[str, str], Cell], roles: Sequence[Role], bios: str) -> str:
    """One Markdown table per task: a row per role (method, run, n, split and bios from its config), a column per
    metric of :data:`SHOWN` with its 95% interval."""
    out = []
    for task, metrics in SHOWN.items():
        out += [
            f"### {task}" + (f" ({bios} bios)" if task in BIO_TASKS else ""),
            "",
            "| method | run | n | split / bios | " + " | ".join(metrics) + " |",
            "|" + "---|" * (4 + len(metrics)),
        ]
        for role in roles:
            cell = cells.get((task, role.name))
            if cell is None:
                out.append(f"| {ROLE_LABELS[role.name]}: `{role.method}` | no data | – | – | " + "– | " * len(metrics))
                continue
            n = f"{cell.n}" if cell.n >= MIN_N else f"n = {cell.n} < {MIN_N}: not a verdict"
            data = cell.run.config.get("split") + (f" / {cell.data or 'named'}" if task in BIO_TASKS else "")
            values = " | ".join(format_value(cell, m) for m in metrics)
            out.append(f"| {ROLE_LABELS[role.name]}: `{role.method}` | `{cell.run.folder}` | {n} | {data} | {values} |")
        out.append("")
    return "\n".join(out)


Need = tuple[str, str, str]
"""(task, role, summary key) of one number a goal reads."""


def _judge(
    cells: dict[tuple[str, str], Cell],
    goal: str,
    rule: str,
    needs: Sequence[Need],
    check: Callable[[list[Any]], tuple[bool, str]],
) -> Verdict:
    """Apply ``check`` to the numbers ``needs`` names; "no data" when a row or a number is missing, "not a verdict"
    when a row has n < 200."""
    missing = []
    for task, role, key in needs:
        cell = cells.get((task, role))
        if cell is None:
            missing.append(f"no {task} row of the {ROLE_LABELS[role]}")
        elif cell.value(key) is None:
            missing.append(f"{cell.where()} has no {key}")
    if missing:
        return Verdict(goal, rule, "; ".join(dict.fromkeys(missing)), "no data")  # each reason once
    ok, measured = check([cells[(task, role)].value(key) for task, role, key in needs])
    small = min(cells[(task, role)].count(key) for task, role, key in needs)
    if small < MIN_N:
        return Verdict(
            goal,
            rule,
            f"{measured} ({'met' if ok else 'not met'} at these numbers)",
            f"n = {small} < {MIN_N}: not a verdict",
        )
    return Verdict(goal, rule, measured, "met" if ok else "not met")


def verdicts(cells: dict[tuple[str, str], Cell], bios: str = "implied") -> list[Verdict]:
    """One verdict per goal (the rules of the module docstring), computed from the cells' numbers; ``bios`` names
    the biographies the bio tasks ran on (the goals are set on implied ones).

    Example:
        >>> [v.status for v in verdicts({})][:2]   # no runs: no data, never met
        ['no data', 'no data']
    """
    judge = lambda *args: _judge(cells, *args)  # noqa: E731
    out = [
        judge(
            f"JSON on {bios} bios: format",
            "candidate strict F.Acc >= 80",
            [("json", "candidate", "f_acc_strict")],
            lambda v: (v[0] >= 0.80 - EPS, _pct(v[0])),
        ),
        judge(
            f"JSON on {bios} bios: occupation kept",
            "candidate strict P.Acc >= unsteered occupation named - 5",
            [("json", "candidate", "p_acc_strict"), ("json", "unsteered", "occupation_named")],
            lambda v: (v[0] >= v[1] - 0.05 - EPS, f"{_pct(v[0])} vs {_pct(v[1])} - 5 = {_pct(v[1] - 0.05)}"),
        ),
        judge(
            "General instructions, held-out types",
            "candidate prompt-level accuracy (loose, attempts) >= unsteered + 10",
            [
                ("instructions", "candidate", "prompt_loose_attempt"),
                ("instructions", "unsteered", "prompt_loose_attempt"),
            ],
            lambda v: (v[0] >= v[1] + 0.10 - EPS, f"{_pct(v[0])} vs {_pct(v[1])} + 10 = {_pct(v[1] + 0.10)}"),
        ),
        judge(
            "Content probe (context QA)",
            "candidate correct >= 0.95 x unsteered",
            [("context_qa", "candidate", "correct"), ("context_qa", "unsteered", "correct")],
            lambda v: (v[0] >= 0.95 * v[1] - EPS, f"{_pct(v[0])} vs 0.95 x {_pct(v[1])} = {_pct(0.95 * v[1])}"),
        ),
        judge(
            f"Pronouns on {bios} bios",
            "candidate fluent A.Acc on rewrites >= unsteered + 10",
            [("pronoun", "candidate", "a_acc_rewrite"), ("pronoun", "unsteered", "a_acc_rewrite")],
            lambda v: (v[0] >= v[1] + 0.10 - EPS, f"{_pct(v[0])} vs {_pct(v[1])} + 10 = {_pct(v[1] + 0.10)}"),
        ),
    ]
    for task, metric, label in (
        ("counterfact", "es", "CounterFact ES"),
        ("counterfact", "ps", "CounterFact PS"),
        ("biasbios", "acc", "BiasBios Acc"),
    ):
        out.append(
            judge(
                f"{label} no worse than the previous default",
                "candidate's 95% upper bound >= previous default",
                [(task, "candidate", metric), (task, "candidate", f"ci95_{metric}"), (task, "previous", metric)],
                lambda v: (
                    v[1][1] >= v[2] - EPS,
                    f"{_pct(v[0])} [{_pct(v[1][0])}, {_pct(v[1][1])}] vs {_pct(v[2])}: upper bound "
                    + ("reaches it" if v[1][1] >= v[2] - EPS else "below it"),
                ),
            )
        )
    for task in FLUENCY_TASKS:
        goal, rule = f"{task} fluency within 5% of zero-shot", "abs(candidate / unsteered - 1) <= 0.05"
        reference = cells.get((task, "unsteered"))
        if reference is not None and reference.value("fluency") == 0:  # e.g. CounterFact with --max-new-tokens 1
            short = f"{reference.where()} has fluency 0: answers too short to measure it"
            out.append(Verdict(goal, rule, short, "no data"))
            continue
        out.append(
            judge(
                goal,
                rule,
                [(task, "candidate", "fluency"), (task, "unsteered", "fluency")],
                lambda v: (abs(v[0] - v[1]) <= 0.05 * v[1] + EPS, f"{v[0]:.2f} / {v[1]:.2f} = {v[0] / v[1]:.3f}x"),
            )
        )
    return out


def verdict_table(rows: Sequence[Verdict]) -> str:
    """The verdicts as a Markdown table."""
    lines = ["| goal | rule | measured | verdict |", "|---|---|---|---|"]
    for v in rows:
        status = v.status if v.status != "not met" else "**not met**"
        lines.append(f"| {v.goal} | {v.rule} | {v.measured} | {status} |")
    return "\n".join(lines) + "\n"


def report(
    folders: Sequence[str | Path],
    roles: Sequence[Role],
    bios: str = "implied",
    allow_small_n: bool = False,
) -> tuple[str, list[Verdict]]:
    """The Markdown report (numbers, then verdicts) and the verdicts, from the runs in ``folders``.

    Example:
        >>> roles = [Role.parse("unsteered", "zero-shot"), Role.parse("candidate", "pasta")]
        >>> text, found = report(["runs/test/json", "runs/test/context_qa"], roles)
        >>> {v.goal: v.status for v in found}["Content probe (context QA)"]   # "met", "not met" or "no data"
    """
    runs, skipped = load_runs(folders)
    cells = find_cells(runs, roles)
    check_cells(cells, bios, allow_small_n)
    found = verdicts(cells, bios)
    models = sorted({str(c.run.config.get("model")) for c in cells.values()})
    head = [
        "## Transfer goals: numbers (test split, 95% intervals as the summaries carry them)",
        "",
        f"Model: {', '.join(models) or 'none'}. Methods: "
        + "; ".join(
            f"{ROLE_LABELS[r.name]} = `{r.method}`" + (f" in `{r.pattern}`" if r.pattern else "") for r in roles
        )
        + ". Rates in %, fluency in bits.",
        "",
    ]
    if skipped:
        head += ["Skipped: " + "; ".join(skipped) + ".", ""]
    text = (
        "\n".join(head) + "\n" + tables(cells, roles, bios) + "\n## Transfer goals: verdicts\n\n" + verdict_table(found)
    )
    return text, found


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--runs", nargs="+", required=True, help="run folders of `pasta-lens evaluate` (or their summary.json files)"
    )
    p.add_argument("--unsteered", default="zero-shot", help="METHOD[@FOLDER_PATTERN] (default zero-shot)")
    p.add_argument("--candidate", required=True, help="the candidate default, e.g. pasta@new-default")
    p.add_argument("--previous", help="the previous default, e.g. pasta@previous-default (missing: no data)")
    p.add_argument("--random", help="random heads of the candidate's size, e.g. random@new-default (a control)")
    p.add_argument(
        "--bios",
        choices=("implied", "named"),
        default="implied",
        help="the biographies the bio tasks must have run on (default implied)",
    )
    p.add_argument(
        "--allow-small-n",
        action="store_true",
        help=f"accept cells with n < {MIN_N}; their verdicts say 'not a verdict'",
    )
    p.add_argument("--out", help="also write the Markdown here (atomically)")
    args = p.parse_args(argv)
    roles = [Role.parse(name, spec) for name in ROLES if (spec := getattr(args, name)) is not None]
    try:
        text, _ = report(args.runs, roles, args.bios, args.allow_small_n)
    except ValueError as err:
        print(f"transfer_goals.py: error: {err}", file=sys.stderr)
        return 2
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
