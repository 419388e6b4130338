"""The evaluation harness: every task x every method, a JSONL row per example, a summary and a paper-style table.

A *method* says how a prompt is shown and whether it is steered (:class:`Method`):

=============  =================================================================================================
zero-shot      markers removed, no steering
star           the span left in the text as ``*span*``, no steering ("*-marked")
quote          the span left in the text as ``"span"``, no steering ('"-marked')
few-shot       three demonstrations from the train split before the query, markers removed, no steering
all-heads      PASTA on every head of every layer
random         PASTA on a seeded random head set of the same size as the profile
pasta          PASTA on the head profile
=============  =================================================================================================

Ablations are methods with options: ``pasta:alpha=0.1`` (another steering strength), ``pasta:k=20`` (the 20
best heads of the profile, ranked by their mean profiling score over tasks), ``random:k=20``.

For each (task, method) the harness renders each example's queries (:mod:`pasta_lens.tasks`), runs greedy
generation for ``generate`` queries in left-padded batches with the KV cache
(:func:`pasta_lens.generation.generate_tokens`, steering hooks active), and scores ``choice`` queries by teacher
forcing (:func:`candidate_logprobs`). Each finished example is appended to ``examples.jsonl`` at once, so an
interrupted run resumes where it stopped (rows are matched by task, method, configuration, example id and the
rendered prompt; reused rows are rescored from their stored outputs, so metric fixes apply to old runs).
``summary.json`` and ``table.md`` are recomputed from the rows of the requested examples and written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import torch

from pasta_lens.generation import decode_new, generate_tokens
from pasta_lens.steering import Head, normalize_heads, steer
from pasta_lens.tasks import TASK_NAMES, Rendering, Task, get_task
from pasta_lens.tasks.base import Rendered, answer_ids, emphasis_of

BASELINES: tuple[str, ...] = ("zero-shot", "star", "quote", "few-shot", "all-heads", "random", "pasta")
ALPHAS: tuple[float, ...] = (0.001, 0.01, 0.1, 0.5)
LABELS = {"zero-shot": "Zero-shot", "star": "`*`-marked", "quote": '`"`-marked', "few-shot": "Few-shot (3)",
          "all-heads": "PASTA, all heads", "random": "PASTA, random heads", "pasta": "PASTA, profile heads"}
METRIC_LABELS = {"f_acc": "F.Acc", "p_acc": "P.Acc", "acc": "Acc", "a_acc": "A.Acc", "fluency": "Fluency",
                 "fluent": "Fluent", "acc_fluent": "Acc (fluent)", "a_acc_fluent": "A.Acc (fluent)",
                 "es": "ES", "ps": "PS"}
TABLE_METRICS = {"json": ("f_acc", "p_acc"), "pronoun": ("acc", "a_acc", "a_acc_fluent", "fluency"),
                 "biasbios": ("acc",), "counterfact": ("es", "ps", "fluency")}
TASK_LABELS = {"json": "JSON", "pronoun": "Pronouns", "biasbios": "BiasBios", "counterfact": "CounterFact"}


@dataclass(frozen=True)
class Method:
    """How prompts are shown and steered.

    Attributes:
        name: the spec it was parsed from (``"pasta:alpha=0.1"``), used as its id in rows and tables.
        marking: ``"none"``, ``"*"`` or ``'"'``.
        few_shot: number of train demonstrations before the query.
        heads: ``"none"``, ``"all"``, ``"random"`` or ``"profile"``.
        alpha: steering strength (None: the evaluation's default).
        k: use the first ``k`` profile heads (ranked); for ``random``, the set size.
    """

    name: str
    marking: str = "none"
    few_shot: int = 0
    heads: str = "none"
    alpha: Optional[float] = None
    k: Optional[int] = None

    def __post_init__(self) -> None:
        if self.heads not in ("none", "all", "random", "profile"):
            raise ValueError(f"Method.heads must be none, all, random or profile; got {self.heads!r}.")
        if self.alpha is not None and not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1]; got {self.alpha} in method {self.name!r}.")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be a positive number of heads; got {self.k} in method {self.name!r}.")

    @property
    def steered(self) -> bool:
        return self.heads != "none"

    @property
    def label(self) -> str:
        base, _, opts = self.name.partition(":")
        return LABELS.get(base, base) + (f" ({opts})" if opts else "")


def parse_method(spec: str) -> Method:
    """``"zero-shot"``, ``"star"``, ``"quote"``, ``"few-shot"``, ``"all-heads"``, ``"random"``, ``"pasta"``,
    optionally with options: ``"pasta:alpha=0.1"``, ``"pasta:k=20"``, ``"random:k=20,alpha=0.1"``.

    Example:
        >>> parse_method("pasta:alpha=0.1")
        Method(name='pasta:alpha=0.1', marking='none', few_shot=0, heads='profile', alpha=0.1, k=None)
    """
    base, _, opts = spec.strip().partition(":")
    presets = {"zero-shot": {}, "star": {"marking": "*"}, "quote": {"marking": '"'}, "few-shot": {"few_shot": 3},
               "all-heads": {"heads": "all"}, "random": {"heads": "random"}, "pasta": {"heads": "profile"}}
    if base not in presets:
        raise ValueError(f"Unknown method {spec!r}; use one of {BASELINES}, optionally with options such as "
                         "pasta:alpha=0.1 or pasta:k=20.")
    kwargs: dict[str, Any] = dict(presets[base])
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        try:
            if not sep or key not in ("alpha", "k"):
                raise ValueError
            kwargs[key] = float(value) if key == "alpha" else int(value)
        except ValueError:
            raise ValueError(f"Bad option {item!r} in method {spec!r}: use alpha=<float> or k=<int>.") from None
    if ("alpha" in kwargs or "k" in kwargs) and kwargs.get("heads", "none") == "none":
        raise ValueError(f"Method {spec!r}: alpha= and k= only apply to steered methods (all-heads, random, pasta).")
    return Method(name=spec.strip(), **kwargs)


def ablation_methods(alphas: Sequence[float] = ALPHAS, ks: Sequence[int] = (), default_alpha: float = 0.01
                     ) -> list[str]:
    """Method specs of the ablations: PASTA at each alpha (other than the default) and with the top-k heads."""
    out = [f"pasta:alpha={a:g}" for a in alphas if not math.isclose(a, default_alpha)]
    return out + [f"pasta:k={k}" for k in ks]


# --------------------------------------------------------------------------------------------------- heads
def ranked_heads(profile: Any) -> tuple[Head, ...]:
    """A profile's heads, best first: by mean score over its tasks when it has scores, else in its own order.

    Accepts a :class:`~pasta_lens.profile.HeadProfile` (``heads`` + per-task ``scores`` tables) or any head spec.
    """
    heads = normalize_heads(profile)
    scores = getattr(profile, "scores", None) or {}
    if not scores:
        if isinstance(profile, (list, tuple)):  # keep a user-given order
            seen: list[Head] = []
            for h in profile:
                h = (int(h[0]), int(h[1]))
                if h not in seen:
                    seen.append(h)
            return tuple(seen)
        return heads
    tables = list(scores.values())
    mean = {h: sum(float(t[h[0]][h[1]]) for t in tables) / len(tables) for h in heads}
    return tuple(sorted(heads, key=lambda h: (-mean[h], h)))


def resolve_heads(method: Method, model: Any, profile_heads: Optional[Sequence[Head]], seed: int = 0
                  ) -> Optional[tuple[Head, ...]]:
    """The heads a method steers on ``model`` (None for unsteered methods)."""
    if method.heads == "none":
        return None
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    every = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    if method.heads == "all":
        return tuple(every)
    if not profile_heads:
        raise ValueError(f"Method {method.name!r} needs a head profile: pass profile= (a registry name, a path "
                         "or a HeadProfile) or heads=[(layer, head), ...].")
    size = method.k or len(profile_heads)
    if size > len(profile_heads) and method.heads == "profile":
        raise ValueError(f"Method {method.name!r} asks for {size} heads but the profile has {len(profile_heads)}.")
    if method.heads == "profile":
        return tuple(profile_heads[:size])
    return tuple(sorted(random.Random(f"random-heads:{seed}:{size}").sample(every, size)))


def load_heads(profile: Any) -> tuple[tuple[Head, ...], str, Any]:
    """``(ranked heads, description, profile object)`` from a registry name, a path, a HeadProfile or a head list."""
    if isinstance(profile, (str, os.PathLike)):
        try:
            from pasta_lens.profile import load_profile  # the profiling helper's module
        except ImportError:
            try:
                from pasta_lens.profiling import load_profile  # type: ignore[no-redef]
            except ImportError:
                raise ImportError("Loading a profile by name or path needs pasta_lens.profile.load_profile, "
                                  "which this installation lacks; pass heads=[(layer, head), ...] (CLI: "
                                  "--heads 20:0,20:3) instead.") from None
        loaded = load_profile(profile)
        return ranked_heads(loaded), f"profile {profile}", loaded
    if hasattr(profile, "heads"):
        return ranked_heads(profile), f"profile {getattr(profile, 'model_name', '')}".strip(), profile
    heads = ranked_heads(list(normalize_heads(profile)) if isinstance(profile, dict) else list(profile))
    return heads, f"{len(heads)} heads given", None


# ------------------------------------------------------------------------------------------------- scoring
def candidate_logprobs(model: Any, rendered: Rendered, candidates: Sequence[str], reduce: str = "sum",
                       heads: Optional[Sequence[Head]] = None, alpha: float = 0.01) -> list[float]:
    """Teacher-forced log-probability of each candidate continuation of one prompt (steered if ``heads``).

    One forward pass over a small batch: a row per distinct multi-token prefix ``prompt + candidate[:-1]``
    (right-padded: causal attention never sees the padding); single-token candidates are read at the prompt's
    last position of any row. ``reduce="sum"`` is the log-probability of the whole string, ``"mean"`` the
    per-token mean (ROME's CounterFact scores). The emphasis covers the prompt only.

    Example:
        >>> r = get_task("biasbios").render(model, markup)
        >>> candidate_logprobs(model, r, [" nurse", " software engineer"], heads=[(20, 0)])
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean'; got {reduce!r}.")
    em = emphasis_of(model, [rendered])
    prompt = em.tokens[0].tolist()
    n = len(prompt)
    ids = [answer_ids(model, c).tolist() for c in candidates]
    prefixes = sorted({tuple(i[:-1]) for i in ids if len(i) > 1}) or [()]
    row_of = {p: r for r, p in enumerate(prefixes)}
    width = n + max(len(p) for p in prefixes)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(prefixes), width), pad, dtype=torch.long)
    for r, p in enumerate(prefixes):
        tokens[r, :n + len(p)] = torch.tensor(prompt + list(p), dtype=torch.long)
    tokens = tokens.to(em.tokens.device)
    ctx = steer(model, heads, em.key_mask, alpha) if heads else nullcontext()
    with torch.inference_mode(), ctx:
        logits = model(tokens)
    logp = torch.log_softmax(logits[:, n - 1:].float(), dim=-1)
    out = []
    for cand in ids:
        row = row_of[tuple(cand[:-1])] if len(cand) > 1 else 0
        total = sum(float(logp[row, i, t]) for i, t in enumerate(cand))
        out.append(total / len(cand) if reduce == "mean" else total)
    return out


def _generate(model: Any, rendered: Sequence[Rendered], heads: Optional[Sequence[Head]], alpha: float,
              max_new_tokens: int) -> list[str]:
    em = emphasis_of(model, rendered)
    ctx = steer(model, heads, em, alpha) if heads else nullcontext()
    with ctx:
        new = generate_tokens(model, em, max_new_tokens)
    return decode_new(model, new)


# ----------------------------------------------------------------------------------------------- the harness
@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` returns (and writes to ``out_dir``).

    Attributes:
        summary: per task and method: ``n`` and the mean of every metric (see ``summary.json``).
        table: the Markdown table (rows = methods, columns = task metrics, average).
        rows: every per-example row of this evaluation (as in ``examples.jsonl``).
        out_dir: where the files are (None when nothing was written).
    """

    summary: dict[str, Any]
    table: str
    rows: tuple[dict[str, Any], ...] = field(repr=False)
    out_dir: Optional[Path] = None


def _config_key(task: Task, method: Method, heads: Optional[Sequence[Head]], alpha: float, split: str,
                variant: str, max_new_tokens: int, model_name: str) -> str:
    payload = json.dumps([model_name, task.name, getattr(task, "synthetic", False), method.name, split, variant,
                          method.marking, method.few_shot, alpha if heads else None,
                          sorted(heads) if heads else None, max_new_tokens], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by an interruption: redo that example
                continue
    return rows


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; results are meant to be read
    os.replace(tmp, path)


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _model_name(model: Any) -> str:
    return str(getattr(model.cfg, "model_name", "") or type(model).__name__)


def evaluate(
    model: Any,
    tasks: Union[str, Sequence[Union[str, Task]]] = "all",
    methods: Union[str, Sequence[str]] = ("zero-shot", "pasta"),
    split: str = "test",
    n: Optional[int] = 50,
    *,
    heads: Any = None,
    profile: Any = None,
    out_dir: Union[str, os.PathLike, None] = None,
    alpha: float = 0.01,
    batch_size: int = 8,
    resume: bool = True,
    seed: int = 0,
    variant: str = "default",
    max_new_tokens: Optional[int] = None,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate ``methods`` on ``tasks``; write per-example JSONL, ``summary.json`` and ``table.md``.

    Args:
        model: a TransformerLens model.
        tasks: ``"all"``, task names, or :class:`~pasta_lens.tasks.Task` objects (e.g. with real bios).
        methods: ``"all"`` (every baseline) or method specs (:func:`parse_method`).
        split: ``"test"`` to report; ``"validation"`` to choose settings (never tune on test).
        n: examples per task (None: the whole split).
        heads: the profile's heads as ``[(layer, head), ...]`` / ``{layer: [heads]}`` (ranked in the given order).
        profile: instead of ``heads``: a registry name, a path, or a ``HeadProfile``.
        out_dir: folder for ``examples.jsonl``, ``summary.json``, ``table.md`` (None: write nothing).
        alpha: default steering strength (methods may override it).
        batch_size: prompts per generation batch (left-padded).
        resume: reuse finished rows of ``out_dir/examples.jsonl`` with the same configuration.
        seed: chooses the examples, the few-shot demonstrations and the random head set.
        variant: prompt variant of the tasks (e.g. ``"short"`` for JSON).
        max_new_tokens: generation length (default: each task's own).
        progress: show tqdm progress bars.

    Example:
        >>> res = evaluate(model, ["json"], ["zero-shot", "pasta"], n=20, heads=[(20, 0), (21, 3)], out_dir="runs/x")
        >>> print(res.table)
    """
    from tqdm.auto import tqdm

    if heads is not None and profile is not None:
        raise ValueError("Pass heads= or profile=, not both.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    task_objs = [get_task(t) if isinstance(t, str) else t
                 for t in (TASK_NAMES if tasks == "all" else ([tasks] if isinstance(tasks, str) else tasks))]
    specs = list(BASELINES) if methods == "all" else ([methods] if isinstance(methods, str) else list(methods))
    method_objs = [parse_method(m) for m in specs]
    source = profile if profile is not None else heads
    profile_heads, heads_note = (load_heads(source)[:2] if source is not None else ((), "none"))
    out = Path(out_dir) if out_dir is not None else None
    rows_path = out / "examples.jsonl" if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    done = {}
    if rows_path is not None and resume:
        done = {(r["config"], r["uid"]): r for r in _read_rows(rows_path)}
        if rows_path.exists() and rows_path.stat().st_size and not rows_path.read_bytes().endswith(b"\n"):
            with open(rows_path, "a", encoding="utf-8") as f:  # end a line cut by an interruption
                f.write("\n")
    elif rows_path is not None and rows_path.exists():
        rows_path.unlink()
    model_name = _model_name(model)
    all_rows: list[dict[str, Any]] = []
    method_heads: dict[str, Optional[tuple[Head, ...]]] = {}
    for task in task_objs:
        examples = task.examples(split, n, seed)
        for method in method_objs:
            hs = resolve_heads(method, model, profile_heads, seed)
            method_heads[method.name] = hs
            a = method.alpha if method.alpha is not None else alpha
            max_new = max_new_tokens or task.max_new_tokens
            config = _config_key(task, method, hs, a, split, variant, max_new, model_name)
            rendering = Rendering(method.marking, task.demos(method.few_shot, seed) if method.few_shot else ())
            for ex in examples:  # reuse a finished row only for the same prompt; rescore it with today's metrics
                row = done.get((config, ex.uid))
                if row is not None:
                    main = task.queries(ex, variant)[0]
                    if row.get("prompt") != task.render(model, main.markup, rendering).text:
                        del done[(config, ex.uid)]
                    else:
                        row["metrics"] = task.metrics_from(ex, row["outputs"])
            todo = [ex for ex in examples if (config, ex.uid) not in done]
            bar = tqdm(total=len(examples), initial=len(examples) - len(todo), disable=not progress,
                       desc=f"{task.name} / {method.name}", unit="ex")
            for chunk in _batches(todo, batch_size):
                new_rows = _run_chunk(model, task, method, chunk, rendering, hs, a, max_new, variant, batch_size)
                for ex, row in zip(chunk, new_rows):
                    row.update(config=config, task=task.name, method=method.name, split=split, uid=ex.uid,
                               synthetic=bool(getattr(ex, "synthetic", False)))
                    done[(config, ex.uid)] = row
                    if rows_path is not None:
                        with open(rows_path, "a", encoding="utf-8") as f:
                            f.write(json.dumps(row) + "\n")
                bar.update(len(chunk))
            bar.close()
            all_rows += [done[(config, ex.uid)] for ex in examples]
    summary = summarize(all_rows, task_objs, method_objs)
    summary["config"] = {"model": model_name, "split": split, "n": n, "seed": seed, "alpha": alpha,
                         "variant": variant, "heads_source": heads_note, "n_profile_heads": len(profile_heads),
                         "heads": {m: (list(map(list, h)) if h else None) for m, h in method_heads.items()}}
    table = markdown_table(summary, task_objs, method_objs)
    if out is not None:
        _atomic_write(out / "summary.json", json.dumps(summary, indent=1) + "\n")
        _atomic_write(out / "table.md", table)
    return EvaluationResult(summary, table, tuple(all_rows), out)


def _run_chunk(model: Any, task: Task, method: Method, chunk: Sequence[Any], rendering: Rendering,
               heads: Optional[Sequence[Head]], alpha: float, max_new: int, variant: str,
               batch_size: int) -> list[dict[str, Any]]:
    queries = {ex.uid: task.queries(ex, variant) for ex in chunk}
    results: dict[str, dict[str, Any]] = {ex.uid: {} for ex in chunk}
    prompts: dict[str, dict[str, str]] = {ex.uid: {} for ex in chunk}
    gen = [(ex.uid, q) for ex in chunk for q in queries[ex.uid] if q.kind == "generate"]
    for sub in _batches(gen, batch_size):
        rendered = [task.render(model, q.markup, rendering) for _, q in sub]
        for (uid, q), text in zip(sub, _generate(model, rendered, heads, alpha, max_new)):
            results[uid][q.key] = text
        for (uid, q), r in zip(sub, rendered):
            prompts[uid][q.key] = r.text
    for ex in chunk:
        for q in queries[ex.uid]:
            if q.kind == "choice":
                r = task.render(model, q.markup, rendering)
                results[ex.uid][q.key] = candidate_logprobs(model, r, q.candidates, q.reduce, heads, alpha)
                prompts[ex.uid][q.key] = r.text
    rows = []
    for ex in chunk:
        main = queries[ex.uid][0].key
        rows.append({"prompt": prompts[ex.uid][main], "prompts": prompts[ex.uid], "outputs": results[ex.uid],
                     "metrics": task.metrics_from(ex, results[ex.uid])})
    return rows


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



# ------------------------------------------------------------------------------------------------------- CLI
def _split_list(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def build_tasks(names: str, bios: Optional[str] = None, data_dir: Optional[str] = None) -> list[Task]:
    """Task objects for the CLI: ``"all"`` or ``"json,counterfact"``; real bios from a file if given."""
    from pasta_lens.tasks import load_bias_in_bios, load_biosbias_pkl

    chosen = list(TASK_NAMES) if names == "all" else _split_list(names)
    loaded = None
    if bios:
        loaded = load_biosbias_pkl(bios) if bios.endswith(".pkl") else load_bias_in_bios(bios)
    out = []
    for name in chosen:
        if name == "counterfact":
            out.append(get_task(name, data_dir=data_dir) if data_dir else get_task(name))
        elif name in TASK_NAMES:
            out.append(get_task(name, bios=loaded))
        else:
            get_task(name)  # raises with the list of names
    return out


def _cmd_evaluate(args: Any) -> int:
    from pasta_lens.cli import parse_heads
    from pasta_lens.generation import default_heads
    from pasta_lens.models import load_model

    if args.profile and args.heads:
        raise ValueError("Give --profile or --heads, not both.")
    if args.threads:
        # On a shared CPU, one intra-op thread per process avoids OpenMP spin-waiting (measured ~8x faster
        # generation on this project's machine under load); torch's own default is one thread per core.
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    methods = list(BASELINES) if args.baselines == "all" else _split_list(args.baselines)
    alphas = [float(a) for a in _split_list(args.alphas)] if args.alphas else []
    ks = [int(k) for k in _split_list(args.ks)] if args.ks else []
    methods += [m for m in ablation_methods(alphas, ks, args.alpha) if m not in methods]
    for m in methods:
        parse_method(m)  # fail before loading data
    source: Any = args.profile or (parse_heads(args.heads, model.cfg.n_heads) if args.heads else None)
    if source is None and any(parse_method(m).heads in ("profile", "random") for m in methods):
        source, note = default_heads(model)
        print(f"no --profile/--heads given: using the {note}", file=sys.stderr)
    tasks = build_tasks(args.tasks, args.bios, args.data_dir)
    kwargs = dict(profile=source) if isinstance(source, str) else dict(heads=source)
    res = evaluate(model, tasks, methods, args.split, args.n, out_dir=args.out, alpha=args.alpha,
                   batch_size=args.batch_size, resume=not args.no_resume, seed=args.seed, variant=args.variant,
                   max_new_tokens=args.max_new_tokens, **kwargs)
    print(res.table)
    print(f"rows: {res.out_dir / 'examples.jsonl'}\nsummary: {res.out_dir / 'summary.json'}\n"
          f"table: {res.out_dir / 'table.md'}")
    return 0


def add_evaluate_parser(sub: Any) -> None:
    """Register ``pasta-lens evaluate`` on the CLI's sub-parsers."""
    p = sub.add_parser("evaluate", help="evaluate baselines and PASTA on the paper's tasks; write a results table",
                       description="Batched greedy evaluation of the paper's tasks (json, pronoun, biasbios, "
                                   "counterfact) under the baselines and PASTA; writes examples.jsonl, "
                                   "summary.json and table.md to --out and resumes an interrupted run.")
    p.add_argument("--model", default="smollm2-135m-instruct", help="model name (default: the offline SmolLM2)")
    p.add_argument("--tasks", default="all", help="all, or a comma list of json,pronoun,biasbios,counterfact")
    p.add_argument("--profile", default=None, help="head profile: a registry name or a path to a profile JSON")
    p.add_argument("--heads", default=None, help="instead of --profile: LAYER:HEAD pairs, e.g. 20:0,20:3,21:*")
    p.add_argument("--baselines", default="all",
                   help=f"all, or a comma list of methods: {', '.join(BASELINES)} (options like pasta:alpha=0.1)")
    p.add_argument("--alphas", default="", help="alpha ablation: add pasta at these alphas, e.g. 0.001,0.1,0.5")
    p.add_argument("--ks", default="", help="head-count ablation: add pasta with the top-k profile heads, e.g. 10,20")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    p.add_argument("--n", type=int, default=50, help="examples per task (default 50)")
    p.add_argument("--out", required=True, help="output folder (examples.jsonl, summary.json, table.md)")
    p.add_argument("--alpha", type=float, default=0.01, help="steering strength (default 0.01)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", default="default", help="prompt variant (json: default, short, rephrased)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation length (default: per task)")
    p.add_argument("--bios", default=None, help="real biographies: LabHC/bias_in_bios rows (.json/.jsonl) or a "
                                                "biosbias BIOS.pkl (default: synthetic bios)")
    p.add_argument("--data-dir", default=None, help="folder with counterfact/{train,test,rome_format}.json[.gz] "
                                                    "(default: $PASTA_LENS_DATA, else the cases shipped with "
                                                    "pasta_lens)")
    p.add_argument("--no-resume", action="store_true", help="start over instead of reusing finished rows")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's; 1 is much faster on a busy shared CPU)")
    p.set_defaults(func=_cmd_evaluate)
