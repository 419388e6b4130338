"""The paper's four-task table with the strict columns beside the paper's, merged from several run folders.

Question: with the paper's own metrics (CounterFact ES/PS by first-token log-probs) and the stricter ones beside them
(strict JSON F.Acc/P.Acc, pronoun rewrites, ROME's mean per-token ES/PS), what do the default and every baseline do
on the test split at n = 200? The rows come from `pasta-lens evaluate` runs, one folder per profile and kind of run
(`gen-<profile>`: json and pronouns; `cf-<profile>`: CounterFact with `--max-new-tokens 1`, forward passes only);
this script only reads their rows (from a copy: a run may still be appending) and prints the markdown tables,
point estimates then 95% intervals, with `-` where a cell has no rows yet.

    python experiments/paper_metrics_table.py --runs runs/p200 [--json results/paper-metrics-n200.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from pasta_lens.evaluation import parse_methods, read_rows, summarize
from pasta_lens.tasks import get_task

ROWS = [  # (label, profile folder suffix, method)
    ("zero-shot", "default", "zero-shot"),
    ("`*`-marked prompt, unsteered", "metric", "star"),
    ("few-shot (3)", "metric", "few-shot"),
    ("all 270 heads, every token", "metric", "all-heads:schedule=all"),
    ("paper's rule (`-attribution`, 18 heads, every token)", "attribution", "pasta"),
    ("12 random heads at 0.01, prompt", "metric", "random"),
    ("`-metric` (12 heads, prompt)", "metric", "pasta"),
    ("70 random heads at 0.01, prompt", "default", "random"),
    ("**default** (70 heads, learned alphas, prompt)", "default", "pasta"),
]
COLS = [  # (header, kind of run, task, metric)
    ("JSON F.Acc", "gen", "json", "f_acc"),
    ("JSON P.Acc", "gen", "json", "p_acc"),
    ("JSON F.Acc strict", "gen", "json", "f_acc_strict"),
    ("JSON P.Acc strict", "gen", "json", "p_acc_strict"),
    ("Pron. Acc", "gen", "pronoun", "acc"),
    ("Pron. A.Acc", "gen", "pronoun", "a_acc"),
    ("Pron. A.Acc (fluent)", "gen", "pronoun", "a_acc_fluent"),
    ("Pron. rewrite", "gen", "pronoun", "rewrite"),
    ("Pron. fluency", "gen", "pronoun", "fluency"),
    ("CF ES", "cf", "counterfact", "es"),
    ("CF PS", "cf", "counterfact", "ps"),
    ("CF ES (ROME mean)", "cf", "counterfact", "es_rome"),
    ("CF PS (ROME mean)", "cf", "counterfact", "ps_rome"),
]


@cache
def folder_summary(folder: Path) -> dict[str, Any]:
    """The harness's summary of every (task, method) in a folder's rows."""
    src = folder / "examples.jsonl"
    if not src.exists():
        return {"tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(src, Path(tmp) / "examples.jsonl")
        rows = read_rows(Path(tmp) / "examples.jsonl")
    tasks = sorted({r["task"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    return summarize(rows, [get_task(t) for t in tasks], parse_methods(methods))


def stats(runs: Path, kind: str, folder: str, task: str, method: str) -> dict[str, Any] | None:
    s = folder_summary(runs / f"{kind}-{folder}")["tasks"].get(task, {}).get(method)
    return s if s and s["n"] else None


def cell(s: dict[str, Any] | None, metric: str, ci: bool) -> str:
    if s is None or s.get(metric) is None:
        return "-"
    scale, fmt = (1, "{:.2f}") if metric == "fluency" else (100, "{:.1f}")
    if ci:
        lo, hi = s[f"ci95_{metric}"]
        return f"[{fmt.format(lo * scale)}, {fmt.format(hi * scale)}]"
    return fmt.format(s[metric] * scale) + ("" if s["n"] == 200 else f" (n = {s['n']})")


def table(runs: Path, ci: bool) -> str:
    lines = [
        "| method (test, n = 200) | " + " | ".join(c[0] for c in COLS) + " | engine |",
        "|---" * (len(COLS) + 2) + "|",
    ]
    for label, folder, method in ROWS:
        found = [stats(runs, kind, folder, task, method) for _, kind, task, _ in COLS]
        engines = sorted({s.get("engine", "?") for s in found if s})
        cells = [cell(s, metric, ci) for s, (_, _, _, metric) in zip(found, COLS)]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {', '.join(engines) or '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder holding gen-<profile>/ and cf-<profile>/")
    parser.add_argument("--json", type=Path, help="also write every cell's statistics here")
    args = parser.parse_args()
    print(table(args.runs, ci=False))
    print("\n95% intervals (Wilson for accuracies, mean +- 1.96 SE for fluency and PS):\n")
    print(table(args.runs, ci=True))
    if args.json:
        cells = {
            label: {f"{task}.{metric}": stats(args.runs, kind, folder, task, method) for _, kind, task, metric in COLS}
            for label, folder, method in ROWS
        }
        args.json.write_text(json.dumps(cells, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
