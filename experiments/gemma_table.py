"""Gemma 3 270M on test: zero-shot, the quick preset and the full recipe, one table.

Question: what do the two shipped Gemma 3 270M profiles do on examples nothing was chosen on, and does the quick
preset (<= 10 minutes) reach >= 90% of the full recipe's CounterFact ES gain over zero-shot? Reads the rows of the
`pasta-lens evaluate` folders that `results/gemma-3-270m.md` names (`test-fwd-*`: CounterFact by first-token
log-probs and BiasBios, forward passes only, n = 200; `test-gen-*`: CounterFact's 48-token greedy generations for
fluency, n = 50) and prints the table, its 95% intervals and the quick-vs-full ES gain ratio.

    python experiments/gemma_table.py --runs runs/gemma [--json results/gemma-3-270m/test.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from paper_metrics_table import cell, folder_summary  # the sibling script: same row reading, same cell format

ROWS = [  # (label, forward-pass folder, generation folder or None, method)
    ("zero-shot", "test-fwd-full", "test-gen-full", "zero-shot"),
    ("`gemma-3-270m-quick` (quick preset: 4 heads, prompt)", "test-fwd-quick", "test-gen-quick", "pasta"),
    ("**`gemma-3-270m`** (full recipe, prompt)", "test-fwd-full", "test-gen-full", "pasta"),
]
COLS = [  # (header, which folder, task, metric)
    ("CF ES", "fwd", "counterfact", "es"),
    ("CF PS", "fwd", "counterfact", "ps"),
    ("CF ES (ROME mean)", "fwd", "counterfact", "es_rome"),
    ("CF PS (ROME mean)", "fwd", "counterfact", "ps_rome"),
    ("BiasBios Acc", "fwd", "biasbios", "acc"),
    ("CF fluency (n = 50)", "gen", "counterfact", "fluency"),
]


def stats(runs: Path, folder: str | None, task: str, method: str) -> dict[str, Any] | None:
    if folder is None:
        return None
    s = folder_summary(runs / folder)["tasks"].get(task, {}).get(method)
    return s if s and s["n"] else None


def found(runs: Path) -> dict[str, list[dict[str, Any] | None]]:
    return {
        label: [stats(runs, fwd if kind == "fwd" else gen, task, method) for _, kind, task, _ in COLS]
        for label, fwd, gen, method in ROWS
    }


def table(runs: Path, ci: bool) -> str:
    lines = ["| method (test) | " + " | ".join(c[0] for c in COLS) + " |", "|---" * (len(COLS) + 1) + "|"]
    for label, cells in found(runs).items():
        shown = []
        for s, (_, _, _, metric) in zip(cells, COLS):
            text = cell(s, metric, ci)
            shown.append(text.replace(" (n = 50)", "") if metric == "fluency" else text)
        lines.append(f"| {label} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def es_gain_ratio(runs: Path) -> str:
    es = {label: (cells[0] or {}).get("es") for label, cells in found(runs).items()}
    zero, quick, full = (es[ROWS[i][0]] for i in (0, 1, 2))
    if None in (zero, quick, full) or full == zero:
        return "quick / full ES gain: not computable yet"
    ratio = (quick - zero) / (full - zero)
    verdict = "met" if ratio >= 0.9 else "not met"
    return (
        f"quick / full ES gain over zero-shot: ({100 * quick:.1f} - {100 * zero:.1f}) / ({100 * full:.1f} - "
        f"{100 * zero:.1f}) = {ratio:.2f} (goal >= 0.90: {verdict})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder holding the test-fwd-* and test-gen-* runs")
    parser.add_argument("--json", type=Path, help="also write every cell's statistics here")
    args = parser.parse_args()
    print(table(args.runs, ci=False))
    print("\n95% intervals (Wilson for accuracies, mean +- 1.96 SE for fluency and PS):\n")
    print(table(args.runs, ci=True))
    print("\n" + es_gain_ratio(args.runs))
    if args.json:
        cells = {label: {f"{c[2]}.{c[3]}": s for s, c in zip(row, COLS)} for label, row in found(args.runs).items()}
        args.json.write_text(json.dumps(cells, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
