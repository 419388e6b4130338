"""Evaluation rows -> a summary (means per task and method) and a paper-style Markdown table.

:func:`summarize` averages every metric per (task, method) over the rows that have it, plus the average over
each task's ``average_metrics``; :func:`markdown_table` prints methods as rows and task metrics as columns
(accuracies in %, fluency in bits), with the n per task and which data are synthetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from pasta_lens.tasks import Task

if TYPE_CHECKING:
    from pasta_lens.evaluation.harness import Method

LABELS = {"zero-shot": "Zero-shot", "star": "`*`-marked", "quote": '`"`-marked', "few-shot": "Few-shot (3)",
          "all-heads": "PASTA, all heads", "random": "PASTA, random heads", "pasta": "PASTA, profile heads"}
METRIC_LABELS = {"f_acc": "F.Acc", "p_acc": "P.Acc", "acc": "Acc", "a_acc": "A.Acc", "fluency": "Fluency",
                 "fluent": "Fluent", "acc_fluent": "Acc (fluent)", "a_acc_fluent": "A.Acc (fluent)",
                 "es": "ES", "ps": "PS"}
TABLE_METRICS = {"json": ("f_acc", "p_acc"), "pronoun": ("acc", "a_acc", "a_acc_fluent", "fluency"),
                 "biasbios": ("acc",), "counterfact": ("es", "ps", "fluency")}
TASK_LABELS = {"json": "JSON", "pronoun": "Pronouns", "biasbios": "BiasBios", "counterfact": "CounterFact"}


def summarize(rows: Sequence[dict[str, Any]], tasks: Sequence[Task], methods: Sequence[Method]) -> dict[str, Any]:
    """Means of every metric per task and method (each over the examples that have it), and the average."""
    out: dict[str, Any] = {"tasks": {}, "average": {}}
    for task in tasks:
        per_method = {}
        for method in methods:
            mine = [r for r in rows if r["task"] == task.name and r["method"] == method.name]
            metrics: dict[str, Any] = {"n": len(mine), "synthetic": any(r.get("synthetic") for r in mine)}
            for name in task.metrics:
                values = [r["metrics"][name] for r in mine if name in r["metrics"]]
                metrics[name] = sum(values) / len(values) if values else None
                metrics[f"n_{name}"] = len(values)
            per_method[method.name] = metrics
        out["tasks"][task.name] = per_method
    for method in methods:
        values = [out["tasks"][t.name][method.name][m] for t in tasks for m in t.average_metrics
                  if out["tasks"][t.name][method.name][m] is not None]
        out["average"][method.name] = sum(values) / len(values) if values else None
    return out


def markdown_table(summary: dict[str, Any], tasks: Sequence[Task], methods: Sequence[Method]) -> str:
    """Rows = methods; columns = each task's metrics (accuracies in %, fluency in bits) and the average."""
    header, cols = ["Method"], []
    for task in tasks:
        synthetic = any(summary["tasks"][task.name][m.name]["synthetic"] for m in methods)
        for metric in TABLE_METRICS.get(task.name, task.metrics):
            header.append(f"{TASK_LABELS.get(task.name, task.name)}{' †' if synthetic else ''} "
                          f"{METRIC_LABELS.get(metric, metric)}")
            cols.append((task.name, metric))
    header.append("Average")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        cells = [method.label]
        for task_name, metric in cols:
            value = summary["tasks"][task_name][method.name][metric]
            cells.append("–" if value is None else (f"{value:.2f}" if metric == "fluency" else f"{100 * value:.1f}"))
        avg = summary["average"][method.name]
        cells.append("–" if avg is None else f"{100 * avg:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    ns = {t.name: max(summary["tasks"][t.name][m.name]["n"] for m in methods) for t in tasks}
    notes = ["", "Accuracies in %, fluency = ROME's weighted 2/3-gram entropy (bits) of the generations; n per task: "
             + ", ".join(f"{TASK_LABELS.get(k, k)} {v}" for k, v in ns.items()) + ".",
             "Average = mean of " + ", ".join(f"{TASK_LABELS.get(t.name, t.name)} "
                                              + "/".join(METRIC_LABELS.get(m, m) for m in t.average_metrics)
                                              for t in tasks) + "."]
    if any("†" in h for h in header):
        notes.append("† synthetic biographies (seeded generator over the 28 BiasBios occupations), not real "
                     "BiasBios data.")
    return "\n".join(lines + notes) + "\n"
