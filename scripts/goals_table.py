"""Issue 11's final table and goal check, assembled from the stored `pasta-lens evaluate` summaries (no model runs).

    .venv/bin/python scripts/goals_table.py                      # prints Markdown
    .venv/bin/python scripts/goals_table.py --out results/head_selection_goals_table.md

Every row is read from a ``summary.json`` under ``results/smollm2-135m-instruct/`` (test split, n = 200 per task,
the same 200 examples for every method; each file records the command's config, heads included). The goal rows
are computed here from those numbers against the thresholds written in issue 11, so the verdicts change if a
summary does: nothing below is typed in by hand except which file holds which row.
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
        raise SystemExit(f"{name}-summary.json has no {task} / {method} row; rerun the command recorded in "
                         "results/learned_smollm2.md for it.")
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


def table() -> str:
    lines = ["| method (test, n = 200) | JSON F.Acc | JSON P.Acc | Pron. A.Acc (fluent) | Pron. fluency | BiasBios Acc "
             "| CF ES | CF PS | CF fluency |", "|" + "---|" * 9]
    zero = {t: _entry(ROWS[0][1], t) for t in _BASE}
    for label, cells in ROWS:
        e = {t: _entry(cells, t) for t in _BASE}
        lines.append(f"| {label} | {_pct(e['json'], 'f_acc')} | {_pct(e['json'], 'p_acc')} | "
                     f"{_pct(e['pronoun'], 'a_acc_fluent')} | {_fluency(e['pronoun'], zero['pronoun'])} | "
                     f"{_pct(e['biasbios'], 'acc')} | {_pct(e['counterfact'], 'es')} | {_pct(e['counterfact'], 'ps')} | "
                     f"{_fluency(e['counterfact'], zero['counterfact'])} |")
    return "\n".join(lines)


def goals() -> list[tuple[str, str, bool]]:
    """``(goal, measured, met)`` for the default against the zero-shot row (point estimates, as the issue states)."""
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
    text = table() + "\n\n| goal (the default, point estimates) | measured | met |\n|---|---|---|\n" + "\n".join(
        f"| {g} | {m} | {'yes' if ok else '**no**'} |" for g, m, ok in goals()) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
