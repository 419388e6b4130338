"""The headline test table of the SmolLM2 default and its targets, built from stored evaluation summaries.

    .venv/bin/python scripts/goals_table.py                      # prints Markdown (all three tables)
    .venv/bin/python scripts/goals_table.py --out runs/goals_table.md

Every cell is read from a ``*-summary.json`` that ``pasta-lens evaluate`` wrote, kept under
``results/smollm2-135m-instruct/`` (test split, n = 200 per task, the same 200 examples for every method; each file
records the command's config, heads included). Three tables: every baseline beside the default (``ROWS``); the
default against the targets set for one profile of all four tasks (computed here from those numbers, so a verdict
changes if a summary does); and the earlier defaults with their random controls (``EARLIER``). Nothing below is
typed in by hand except which file holds which row. No model is run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1] / "results" / "smollm2-135m-instruct"

# (label, {task: (summary file, method key)}); every file is test, n = 200.
_BASE = {"json": "test200-json-pronoun", "pronoun": "test200-json-pronoun", "biasbios": "test200-biasbios",
         "counterfact": "test200-counterfact"}
ROWS: list[tuple[str, dict[str, tuple[str, str]]]] = [
    ("zero-shot", {t: (f, "zero-shot") for t, f in _BASE.items()}),
    ("`*`-marked prompt, unsteered", {t: (f, "star") for t, f in _BASE.items()}),
    ("few-shot (3)", {**{t: (f, "few-shot") for t, f in _BASE.items()},
                      "biasbios": ("test200-biasbios-fewshot", "few-shot")}),
    ("all 270 heads, every token", {t: (f, "all-heads:schedule=all") for t, f in _BASE.items()}),
    ("paper's rule: intersection of per-task top-120, 18 heads, every token (`-attribution`)",
     {"json": ("test200-attribution-profile", "pasta"), "pronoun": ("test200-attribution-profile", "pasta"),
      "biasbios": ("test200-attribution-profile", "pasta"),
      "counterfact": ("test200-counterfact-attribution-profile", "pasta")}),
    ("12 random heads at 0.01, prompt", {t: (f, "random") for t, f in _BASE.items()}),
    ("`-metric`: chosen by the task metrics, 12 heads, prompt", {t: (f, "pasta") for t, f in _BASE.items()}),
    ("70 random heads at 0.01, prompt (the default's size)",
     {t: ("test200-default-random70", "random") for t in _BASE}),
    ("**default**: `-metric` + learned strengths, 70 heads, prompt",
     {t: ("test200-default-protect-base", "pasta") for t in _BASE}),
]
# Earlier defaults of the SmolLM2 registry, oldest first (when each became the default, its commit), and the
# seeded random controls sized like them; the profiles made by `pasta-lens profile` are in experiments/profiles/.
EARLIER: list[tuple[str, dict[str, tuple[str, str]]]] = [
    ("2026-12-06 `33be1cf`: `-json-on-metric-cli`, 46 heads",
     {t: ("test200-json-on-metric-cli", "pasta") for t in _BASE}),
    ("46 random heads at 0.01, prompt", {t: ("test200-json-on-metric-cli", "random") for t in _BASE}),
    ("2026-12-06 `3d83d3f`: JSON strengths on `-metric` (research script), 47 heads",
     {t: ("test200-default-r1", "pasta") for t in _BASE}),
    ("47 random heads at 0.01, prompt", {t: ("test200-default-r1-random", "random") for t in _BASE}),
    ("`-plus-json` (not a default): union of `-metric` and `-json-learned`, 42 heads",
     {t: ("test200-plus-json", "pasta") for t in _BASE}),
    ("2026-12-06 `d9b8bef`: + closing-token term (research script), 78 heads",
     {t: ("test200-default-close", "pasta") for t in _BASE}),
    ("78 random heads at 0.01, prompt", {t: ("test200-default-close-random", "random") for t in _BASE}),
    ("2026-12-06 `f3254cb`: + occupation, early-close and pronoun-protect terms (research script), 77 heads",
     {t: ("test200-default-protect-gen", "pasta") for t in _BASE}),
    ("77 random heads at 0.01, prompt", {t: ("test200-default-protect-gen-random", "random") for t in _BASE}),
    ("`-protect-cli` (not a default): that recipe by `pasta-lens profile`, seed 0, 78 heads",
     {t: ("test200-protect-cli", "pasta") for t in _BASE}),
    ("2026-12-06 `0864763`: `-protect-cli-seed2`, that recipe by `pasta-lens profile`, seed 2, 72 heads",
     {t: ("test200-default-seed2", "pasta") for t in _BASE}),
    ("2026-12-06 `0fb6598`: the current default (+ `--protect-base counterfact`), 70 heads",
     {t: ("test200-default-protect-base", "pasta") for t in _BASE}),
]
DEFAULT = ROWS[-1][0]
ZERO_SHOT = ROWS[0][0]


def _load(name: str) -> dict[str, Any]:
    return json.loads((ROOT / f"{name}-summary.json").read_text())["tasks"]


def _entry(cells: dict[str, tuple[str, str]], task: str) -> Optional[dict[str, Any]]:
    if task not in cells:
        return None
    name, method = cells[task]
    entry = _load(name).get(task, {}).get(method)
    if entry is None:
        raise SystemExit(f"{name}-summary.json has no {task} / {method} row; rerun the command given for it in "
                         "results/evaluation.md.")
    if entry["n"] < 200:
        raise SystemExit(f"{name}-summary.json: {task} / {method} has n = {entry['n']}, not 200.")
    return entry


def _pct(entry: Optional[dict[str, Any]], metric: str, ci: bool = True) -> str:
    if entry is None or entry.get(metric) is None:
        return "–"
    text = f"{100 * entry[metric]:.1f}"
    interval = entry.get(f"ci95_{metric}")
    return f"{text} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if ci and interval else text


def _fluency(entry: Optional[dict[str, Any]], zero: dict[str, Any]) -> str:
    if entry is None or entry.get("fluency") is None:
        return "–"
    return f"{entry['fluency']:.2f} ({entry['fluency'] / zero['fluency']:.3f}x)"


def table(rows: Optional[list[tuple[str, dict[str, tuple[str, str]]]]] = None) -> str:
    """One Markdown row per entry of ``rows`` (default ``ROWS``); fluency as a ratio to the zero-shot row."""
    lines = ["| method (test, n = 200) | JSON F.Acc | JSON P.Acc | Pron. A.Acc (fluent) | Pron. fluency | BiasBios Acc "
             "| CF ES | CF PS | CF fluency |", "|" + "---|" * 9]
    zero = {t: _entry(ROWS[0][1], t) for t in _BASE}
    for label, cells in ROWS if rows is None else rows:
        e = {t: _entry(cells, t) for t in _BASE}
        lines.append(f"| {label} | {_pct(e['json'], 'f_acc')} | {_pct(e['json'], 'p_acc')} | "
                     f"{_pct(e['pronoun'], 'a_acc_fluent')} | {_fluency(e['pronoun'], zero['pronoun'])} | "
                     f"{_pct(e['biasbios'], 'acc')} | {_pct(e['counterfact'], 'es')} | {_pct(e['counterfact'], 'ps')} | "
                     f"{_fluency(e['counterfact'], zero['counterfact'])} |")
    return "\n".join(lines)


def goals() -> list[tuple[str, str, bool]]:
    """``(goal, measured, met)`` for the default against the zero-shot row (point estimates, as the targets are
    stated)."""
    d = {t: _entry(dict(ROWS)[DEFAULT], t) for t in _BASE}
    z = {t: _entry(dict(ROWS)[ZERO_SHOT], t) for t in _BASE}
    out = [
        ("JSON F.Acc >= 70 and P.Acc >= 50", f"{_pct(d['json'], 'f_acc', False)} / {_pct(d['json'], 'p_acc', False)}",
         d["json"]["f_acc"] >= 0.70 and d["json"]["p_acc"] >= 0.50),
        ("Pronouns A.Acc (fluent) >= zero-shot + 20",
         f"{_pct(d['pronoun'], 'a_acc_fluent', False)} vs {_pct(z['pronoun'], 'a_acc_fluent', False)}",
         d["pronoun"]["a_acc_fluent"] >= z["pronoun"]["a_acc_fluent"] + 0.20 - 1e-9),
        ("CounterFact ES >= 97", _pct(d["counterfact"], "es", False), d["counterfact"]["es"] >= 0.97 - 1e-9),
        ("CounterFact PS >= 95", _pct(d["counterfact"], "ps", False), d["counterfact"]["ps"] >= 0.95 - 1e-9),
        ("BiasBios >= zero-shot + 5", f"{_pct(d['biasbios'], 'acc', False)} vs {_pct(z['biasbios'], 'acc', False)}",
         d["biasbios"]["acc"] >= z["biasbios"]["acc"] + 0.05 - 1e-9),
    ]
    for task in ("pronoun", "counterfact"):  # the tasks whose rows carry a fluency (free generation)
        ratio = d[task]["fluency"] / z[task]["fluency"]
        out.append((f"{task} fluency within 5% of zero-shot", f"{ratio:.3f}x", abs(ratio - 1) <= 0.05))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="also write the Markdown here")
    args = p.parse_args()
    text = (table() + "\n\n| target (the default, point estimates) | measured | met |\n|---|---|---|\n"
            + "\n".join(f"| {g} | {m} | {'yes' if ok else '**no**'} |" for g, m, ok in goals()) + "\n\n"
            + table(EARLIER) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
