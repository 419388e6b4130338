"""Evaluation rows -> a summary (means per task and method) and a paper-style Markdown table.

:func:`summarize` averages every metric per (task, method) over the rows that have it, plus the average over
each task's ``average_metrics``; :func:`markdown_table` prints methods as rows and task metrics as columns
(accuracies in %, fluency in bits), with the n per task and which data are synthetic, and below it the 95%
intervals of the same cells.

Intervals (``ci95_<metric>`` in the summary): a metric whose values are all 0 or 1 (accuracies) gets the Wilson
score interval, which stays inside [0, 1] and is right near 0 and 1 where the normal one is not; any other metric
(fluency, CounterFact PS, a per-example fraction of paraphrases) gets mean +- 1.96 standard errors, clipped to
[0, 1] where every value lies in [0, 1] (a fraction's mean cannot leave it). The average's interval treats the
per-task means as independent (each from its own examples): mean +- 1.96 sqrt(sum SE^2) / m, clipped to [0, 1]
where every metric in it is a fraction; an average of one metric has that metric's own interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pasta_lens.evaluation.specs import Method
from pasta_lens.tasks import Task

METRIC_LABELS = {
    "f_acc": "F.Acc",
    "p_acc": "P.Acc",
    "acc": "Acc",
    "a_acc": "A.Acc",
    "fluency": "Fluency",
    "fluent": "Fluent",
    "acc_fluent": "Acc (fluent)",
    "a_acc_fluent": "A.Acc (fluent)",
    "es": "ES",
    "ps": "PS",
    "es_rome": "ES (ROME mean)",
    "ps_rome": "PS (ROME mean)",
    "f_acc_strict": "F.Acc (strict)",
    "p_acc_strict": "P.Acc (strict)",
    "rewrite": "Rewrite",
}
TABLE_METRICS = {
    "json": ("f_acc", "p_acc", "f_acc_strict", "p_acc_strict"),
    "pronoun": ("acc", "a_acc", "a_acc_fluent", "rewrite", "fluency"),
    "biasbios": ("acc",),
    "counterfact": ("es", "ps", "es_rome", "ps_rome", "fluency"),
}
TASK_LABELS = {"json": "JSON", "pronoun": "Pronouns", "biasbios": "BiasBios", "counterfact": "CounterFact"}


Z95 = 1.959963984540054
"""The two-sided 95% normal quantile."""


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n``: ``(low, high)``.

    Example:
        >>> [round(x, 3) for x in wilson_interval(49, 50)]  # 98% of 50: not the normal interval's 94-102%
        [0.895, 0.996]
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n and n >= 1; got {successes} of {n}.")
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _standard_error(values: Sequence[float]) -> float | None:
    """The standard error of the mean (Bernoulli for 0/1 values, sample standard deviation otherwise)."""
    n = len(values)
    mean = sum(values) / n
    if all(v in (0, 1) for v in values):
        return math.sqrt(mean * (1 - mean) / n)
    if n < 2:
        return None
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def interval95(values: Sequence[float]) -> tuple[float, float] | None:
    """95% interval of the mean of ``values``: Wilson for 0/1 values, else mean +- 1.96 SE (None if n < 2)."""
    if not values:
        return None
    if all(v in (0, 1) for v in values):
        return wilson_interval(int(sum(values)), len(values))
    se = _standard_error(values)
    mean = sum(values) / len(values)
    if se is None:
        return None
    return _clip((mean - Z95 * se, mean + Z95 * se), _fractions(values))


def _fractions(values: Sequence[float]) -> bool:
    return all(0 <= v <= 1 for v in values)


def _clip(interval: tuple[float, float], fractions: bool) -> tuple[float, float]:
    return (max(interval[0], 0.0), min(interval[1], 1.0)) if fractions else interval


def summarize(rows: Sequence[dict[str, Any]], tasks: Sequence[Task], methods: Sequence[Method]) -> dict[str, Any]:
    """Means of every metric per task and method (each over the examples that have it), their 95% intervals
    (``ci95_<metric>``, ``[low, high]`` or None), and the average with its interval (``average_ci95``)."""
    out: dict[str, Any] = {"tasks": {}, "average": {}, "average_ci95": {}}
    errors: dict[tuple[str, str, str], float | None] = {}
    fractions: dict[tuple[str, str, str], bool] = {}
    for task in tasks:
        per_method = {}
        for method in methods:
            mine = [r for r in rows if r["task"] == task.name and r["method"] == method.name]
            metrics: dict[str, Any] = {
                "n": len(mine),
                "synthetic": any(r.get("synthetic") for r in mine),
                "engine": "+".join(sorted({str(r.get("engine")) for r in mine})) or None,
            }
            for name in task.metrics:
                values = [r["metrics"][name] for r in mine if name in r["metrics"]]
                metrics[name] = sum(values) / len(values) if values else None
                metrics[f"n_{name}"] = len(values)
                ci = interval95(values)
                metrics[f"ci95_{name}"] = None if ci is None else [ci[0], ci[1]]
                errors[(task.name, method.name, name)] = _standard_error(values) if values else None
                fractions[(task.name, method.name, name)] = _fractions(values)
            per_method[method.name] = metrics
        out["tasks"][task.name] = per_method
    for method in methods:
        keys = [
            (t.name, m) for t in tasks for m in t.average_metrics if out["tasks"][t.name][method.name][m] is not None
        ]  # the metrics this method has
        values = [out["tasks"][task_name][method.name][m] for task_name, m in keys]
        out["average"][method.name] = sum(values) / len(values) if values else None
        errs = [errors[(task_name, method.name, m)] for task_name, m in keys]
        ses = [se for se in errs if se is not None]
        if len(keys) == 1:  # one metric: its own interval (Wilson for an accuracy, which stays inside [0, 1])
            ((task_name, metric),) = keys
            out["average_ci95"][method.name] = out["tasks"][task_name][method.name][f"ci95_{metric}"]
        elif values and len(ses) == len(keys):  # every metric has its standard error
            half = Z95 * math.sqrt(sum(se * se for se in ses)) / len(ses)
            mean = out["average"][method.name]
            low, high = _clip(
                (mean - half, mean + half), all(fractions[(task_name, method.name, m)] for task_name, m in keys)
            )
            out["average_ci95"][method.name] = [low, high]
        else:
            out["average_ci95"][method.name] = None
    return out


def format_cell(value: float | None, metric: str) -> str:
    """A table cell: fluency in bits (``"3.95"``), every other metric in % (``"96.0"``), None as ``"–"``."""
    return "–" if value is None else (f"{value:.2f}" if metric == "fluency" else f"{100 * value:.1f}")


def format_interval(ci: Sequence[float] | None, metric: str) -> str:
    """An interval cell ``"[92.3, 98.0]"`` in the units of :func:`format_cell` (None as ``"–"``)."""
    return "–" if ci is None else f"[{format_cell(ci[0], metric)}, {format_cell(ci[1], metric)}]"


def markdown_table(
    summary: dict[str, Any], tasks: Sequence[Task], methods: Sequence[Method], intervals: bool = True
) -> str:
    """Rows = methods; columns = each task's metrics (accuracies in %, fluency in bits) and the average.

    With ``intervals`` (default) a second table of the same layout gives each cell's 95% interval ``[low, high]``
    (summaries written before intervals existed have none: their cells read "–").
    """
    header, cols = ["Method"], []
    for task in tasks:
        synthetic = any(summary["tasks"][task.name][m.name]["synthetic"] for m in methods)
        for metric in TABLE_METRICS.get(task.name, task.metrics):
            header.append(
                f"{TASK_LABELS.get(task.name, task.name)}{' †' if synthetic else ''} "
                f"{METRIC_LABELS.get(metric, metric)}"
            )
            cols.append((task.name, metric))
    header.append("Average")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        cells = [method.label]
        for task_name, metric in cols:
            cells.append(format_cell(summary["tasks"][task_name][method.name][metric], metric))
        cells.append(format_cell(summary["average"][method.name], "average"))
        lines.append("| " + " | ".join(cells) + " |")
    if intervals:
        lines += [
            "",
            "95% intervals (Wilson for accuracies, mean +- 1.96 SE otherwise):",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for method in methods:
            cells = [method.label]
            for task_name, metric in cols + [("", "average")]:
                ci = (
                    summary.get("average_ci95", {}).get(method.name)
                    if metric == "average"
                    else summary["tasks"][task_name][method.name].get(f"ci95_{metric}")
                )
                cells.append(format_interval(ci, metric))
            lines.append("| " + " | ".join(cells) + " |")
    ns = {t.name: max(summary["tasks"][t.name][m.name]["n"] for m in methods) for t in tasks}
    notes = [
        "",
        "Accuracies in %, fluency = ROME's weighted 2/3-gram entropy (bits) of the generations; n per task: "
        + ", ".join(f"{TASK_LABELS.get(k, k)} {v}" for k, v in ns.items())
        + ".",
        "Average = mean of "
        + ", ".join(
            f"{TASK_LABELS.get(t.name, t.name)} " + "/".join(METRIC_LABELS.get(m, m) for m in t.average_metrics)
            for t in tasks
        )
        + ".",
    ]
    if any(t.name == "counterfact" for t in tasks):
        notes.append(
            "CounterFact ES / PS: P(new object) > P(old object) by the first token's log-prob after the "
            "question (PS: mean over the case's paraphrases), as the official PASTA code computes them; "
            "ES / PS (ROME mean): the same comparison of the mean per-token log-probs of the whole objects."
        )
    engines = sorted({e for t in tasks for m in methods if (e := summary["tasks"][t.name][m.name].get("engine"))})
    if engines:
        notes.append(
            "Engine: " + ", ".join(engines) + " (hf: HF's loop on a twin of the bridge's weights; hooks: "
            "TransformerLens' loop with the steering hooks; forward: choice queries only, teacher forcing)."
        )
    if any("†" in h for h in header):
        notes.append(
            "† synthetic biographies (seeded generator over the 28 BiasBios occupations), not real BiasBios data."
        )
    return "\n".join(lines + notes) + "\n"
