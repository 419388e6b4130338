"""Screen steering mechanisms on the transfer tasks by a rule fixed beforehand; print one Markdown table.

    python experiments/transfer_screen.py --runs runs/s3/* --unsteered zero-shot@runs/s3/instaboost

Reads the ``summary.json`` of every ``pasta-lens evaluate`` folder given (tasks ``json``, ``context_qa``,
``instructions``), one row per (folder, method). The rule (written in the study's ``DECLARED.txt`` before any number
was read):

* content floor: ``context_qa correct >= 0.95 x`` the unsteered row's, on the same examples;
* fluency floor: ``instructions fluency >= 0.95 x`` the unsteered row's;
* score: the mean of ``instructions prompt_loose_attempt`` (held-out instruction types, an on-topic attempt
  required) and ``json f_acc_strict`` (implied bios).

Rows are sorted by score, those passing both floors first. A row whose tasks ran on other examples than the
unsteered row's (another split, n, seed or bios) is refused. No model is run.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

COLUMNS = [
    ("json", "f_acc_strict", "JSON strict F.Acc"),
    ("json", "p_acc_strict", "occupation in the object"),
    ("json", "occupation_named", "occupation named"),
    ("context_qa", "correct", "context QA correct"),
    ("context_qa", "format", "format"),
    ("instructions", "prompt_loose_attempt", "instructions (attempt)"),
    ("instructions", "prompt_loose", "instructions (loose)"),
    ("instructions", "fluency", "instr. fluency"),
]
FLOOR = 0.95


def rows_of(folder: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(label, tasks[task] -> metrics of this method, config) for every method of one run folder."""
    summary = json.loads((folder / "summary.json").read_text())
    methods = sorted({m for task in summary["tasks"].values() for m in task})
    out = []
    for method in methods:
        cells = {t: v[method] for t, v in summary["tasks"].items() if method in v}
        short = re.sub(r"projections=[^,]*", lambda m: "projections=" + Path(m.group(0)[12:]).name, method)
        out.append((f"{short}@{folder.name}", cells, summary["config"]))
    return out


def same_examples(a: dict[str, Any], b: dict[str, Any], task: str, na: int, nb: int) -> bool:
    keys = ("split", "seed", "model")
    bios_a = a.get("task_data", {}).get(task)
    bios_b = b.get("task_data", {}).get(task)
    return all(a.get(k) == b.get(k) for k in keys) and bios_a == bios_b and na == nb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="run folders of pasta-lens evaluate")
    parser.add_argument("--unsteered", required=True, help="METHOD@FOLDER of the unsteered reference row")
    parser.add_argument("--figure", default=None, help="also draw content ratio against score to this PNG")
    args = parser.parse_args()
    rows = [r for f in args.runs if (Path(f) / "summary.json").exists() for r in rows_of(Path(f))]
    method, folder = args.unsteered.split("@", 1)
    ref_label = f"{method}@{Path(folder).name}"
    ref = {label: (cells, config) for label, cells, config in rows}.get(ref_label)
    if ref is None:
        raise SystemExit(f"no row {ref_label} among the runs; pass the folder that holds the unsteered method")
    ref_cells, ref_config = ref
    table = []
    for label, cells, config in rows:
        if label.split("@")[0] == method and label != ref_label:
            continue  # the same unsteered rows of another folder: shown once
        for task, metrics in cells.items():
            if task in ref_cells and not same_examples(config, ref_config, task, metrics["n"], ref_cells[task]["n"]):
                raise SystemExit(f"{label}: {task} ran on other examples than {ref_label}; rerun it like the reference")
        content = cells.get("context_qa", {}).get("correct")
        fluency = cells.get("instructions", {}).get("fluency")
        ok_content = content is not None and content >= FLOOR * ref_cells["context_qa"]["correct"] - 1e-9
        ok_fluency = fluency is not None and fluency >= FLOOR * ref_cells["instructions"]["fluency"] - 1e-9
        parts = [cells.get("instructions", {}).get("prompt_loose_attempt"), cells.get("json", {}).get("f_acc_strict")]
        score = None if None in parts else sum(parts) / 2  # type: ignore[arg-type]
        table.append((label, cells, content, fluency, ok_content, ok_fluency, score))
    table.sort(key=lambda r: (not (r[4] and r[5]), -(r[6] or -1.0)))
    ns = {t: m["n"] for t, m in ref_cells.items()}
    print(f"n per task: {ns}; unsteered reference {ref_label}; floors {FLOOR}x on context QA and fluency\n")
    head = [c[2] for c in COLUMNS] + ["content ratio", "fluency ratio", "floors", "score"]
    print("| row | " + " | ".join(head) + " |")
    print("|---" * (len(head) + 1) + "|")
    for label, cells, content, fluency, ok_c, ok_f, score in table:
        vals = []
        for task, key, _ in COLUMNS:
            v = cells.get(task, {}).get(key)
            vals.append("-" if v is None else (f"{v:.2f}" if key == "fluency" else f"{100 * v:.1f}"))
        rc = "-" if content is None else f"{content / ref_cells['context_qa']['correct']:.2f}x"
        rf = "-" if fluency is None else f"{fluency / ref_cells['instructions']['fluency']:.2f}x"
        floors = "pass" if ok_c and ok_f else ("content" if not ok_c else "") + (" fluency" if not ok_f else "")
        vals += [rc, rf, floors.strip() if floors != "pass" else "pass", "-" if score is None else f"{100 * score:.1f}"]
        print(f"| {label} | " + " | ".join(vals) + " |")
    if args.figure:
        draw(table, ref_cells, args.figure)


def draw(table: list[tuple[Any, ...]], ref_cells: dict[str, Any], path: str) -> None:
    """Content kept (x: correctness / unsteered) against the rule's score (y), one labelled point per row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ref = ref_cells["context_qa"]["correct"]
    seen: dict[tuple[float, float], int] = {}
    for label, _cells, content, _fluency, ok_c, ok_f, score in table:
        if content is None or score is None:
            continue
        x, y = content / ref, 100 * score
        ax.scatter([x], [y], color="tab:green" if ok_c and ok_f else "tab:red", zorder=3)
        method, folder = label.split("@", 1)
        name = f"pasta {folder}" if method == "pasta" else re.sub(r"projections=[^,]*,?", "", method).rstrip(":")
        key = (round(x, 3), round(y, 3))
        seen[key] = stack = seen.get(key, -1) + 1
        ax.annotate(name, (x, y), fontsize=7, xytext=(4, 3 + 9 * stack), textcoords="offset points")
    ax.axvline(FLOOR, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("context-QA correctness / unsteered (content floor 0.95, dashed)")
    ax.set_ylabel("score: mean of held-out instructions and strict JSON (%)")
    ax.set_title("Steering mechanisms on validation (green: both floors passed)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
