"""The evaluation harness: render each task's examples per method, generate or score them, keep one row each.

See :mod:`pasta_lens.evaluation` for the methods and the resume rule. Rows go to ``examples.jsonl`` as they are
finished; the summary and table (:mod:`pasta_lens.evaluation.report`) are written atomically at the end.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import torch

from pasta_lens.distributed import broadcast, current_world, map_batches
from pasta_lens.evaluation.report import LABELS, markdown_table, summarize
from pasta_lens import methods as steering_methods
from pasta_lens.generation import decode_new, generate_tokens, method_tokens, select_engine
from pasta_lens.hf_engine import hf_generate_tokens
from pasta_lens.io import atomic_write_text
from pasta_lens.profile import load_profile
from pasta_lens.schedule import Schedule
from pasta_lens.steering import DEFAULT_ALPHA, AlphaSpec, Head, normalize_heads, resolve_schedule, steer
from pasta_lens.tasks import TASK_NAMES, Rendering, Task, get_task
from pasta_lens.tasks.base import Rendered, answer_ids, emphasis_of

BASELINES: tuple[str, ...] = ("zero-shot", "star", "quote", "few-shot", "all-heads", "random", "pasta")
ALPHAS: tuple[float, ...] = (0.001, 0.01, 0.1, 0.5)


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
        schedule: which query rows are steered (:class:`~pasta_lens.schedule.Schedule`; None: the
            evaluation's default).
        steering: the steering method of :mod:`pasta_lens.methods` (``"pasta"``, or e.g. ``"instaboost"`` for
            ``"instaboost:factor=5"``), with its parameters in ``params``.
    """

    name: str
    marking: str = "none"
    few_shot: int = 0
    heads: str = "none"
    alpha: Optional[float] = None
    k: Optional[int] = None
    schedule: Optional[Schedule] = None
    steering: str = "pasta"
    params: tuple[tuple[str, Any], ...] = ()

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
    optionally with options: ``"pasta:alpha=0.1"``, ``"pasta:k=20"``, ``"random:k=20,alpha=0.1"``,
    ``"pasta:schedule=prompt"``, ``"pasta:schedule=first:4,alpha=0.1"``.

    Example:
        >>> parse_method("pasta:alpha=0.1")
        Method(name='pasta:alpha=0.1', marking='none', few_shot=0, heads='profile', alpha=0.1, k=None, schedule=None)
    """
    base, _, opts = spec.strip().partition(":")
    if base != "pasta" and base in steering_methods.available():  # another method: its own options, every head
        name, params = steering_methods.parse_spec(spec)
        return Method(name=spec.strip(), heads="all", steering=name, params=tuple(sorted(params.items())))
    presets = {"zero-shot": {}, "star": {"marking": "*"}, "quote": {"marking": '"'}, "few-shot": {"few_shot": 3},
               "all-heads": {"heads": "all"}, "random": {"heads": "random"}, "pasta": {"heads": "profile"}}
    if base not in presets:
        raise ValueError(f"Unknown method {spec!r}; use one of {BASELINES} (options such as pasta:alpha=0.1, "
                         "pasta:k=20 or pasta:schedule=prompt) or a steering method of pasta_lens.methods: "
                         f"{', '.join(steering_methods.available()[1:])} (e.g. instaboost:factor=5).")
    kwargs: dict[str, Any] = dict(presets[base])
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        try:
            if not sep or key not in ("alpha", "k", "schedule"):
                raise ValueError
            if key == "schedule":
                kwargs[key] = Schedule.parse(value)
            else:
                kwargs[key] = float(value) if key == "alpha" else int(value)
        except ValueError as err:
            hint = f" ({err})" if key == "schedule" and sep else ""
            raise ValueError(f"Bad option {item!r} in method {spec!r}: use alpha=<float>, k=<int> or "
                             f"schedule=<all|prompt|first:N|decay:G>{hint}.") from None
    if any(o in kwargs for o in ("alpha", "k", "schedule")) and kwargs.get("heads", "none") == "none":
        raise ValueError(f"Method {spec!r}: alpha=, k= and schedule= only apply to steered methods (all-heads, "
                         "random, pasta).")
    return Method(name=spec.strip(), **kwargs)


def ablation_methods(alphas: Sequence[float] = ALPHAS, ks: Sequence[int] = (), default_alpha: float = 0.01,
                     schedules: Sequence[Union[str, Schedule]] = (),
                     default_schedule: Union[str, Schedule, None] = "all") -> list[str]:
    """Method specs of the ablations: PASTA at each alpha (other than the default), with the top-k heads, and
    under each schedule (other than the default)."""
    out = [f"pasta:alpha={a:g}" for a in alphas if not math.isclose(a, default_alpha)]
    default = Schedule.parse(default_schedule)
    return out + [f"pasta:k={k}" for k in ks] + [f"pasta:schedule={Schedule.parse(s)}" for s in schedules
                                                 if Schedule.parse(s) != default]


# --------------------------------------------------------------------------------------------------- heads
def ranked_heads(profile: Any) -> tuple[Head, ...]:
    """A profile's heads, best first: by learned alpha (smallest first) when it has per-head alphas, else by mean
    score over its tasks when it has scores, else in its own order.

    Accepts a :class:`~pasta_lens.profile.HeadProfile` (``heads`` + per-task ``scores`` tables) or any head spec.
    """
    heads = normalize_heads(profile)
    own = getattr(profile, "head_alphas", None) or {}
    if own:  # a learned profile: the most strongly steered heads first (smallest alpha)
        return tuple(sorted(heads, key=lambda h: (float(own[h]), h)))
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


def method_alpha(method: Method, default: Optional[float], heads: Optional[Sequence[Head]],
                 head_alphas: Optional[Any] = None) -> AlphaSpec:
    """The alpha a method steers with; the precedence of :func:`pasta_lens.steering.resolve_alpha`, per method.

    1. the method's own option (``pasta:alpha=0.1``);
    2. the evaluation's ``alpha`` when given (``evaluate(alpha=0.01)``, ``pasta-lens evaluate --alpha 0.01``);
    3. for ``pasta`` (the profile's heads, also with ``k=``): the profile's per-head alphas (``head_alphas``, a
       learned profile), restricted to the heads steered;
    4. 0.01 (:data:`~pasta_lens.steering.DEFAULT_ALPHA`). ``all-heads`` and ``random`` never take per-head
       alphas: they are not the profile's heads.

    Example:
        >>> method_alpha(parse_method("pasta"), None, [(20, 0)], {(20, 0): 0.05, (21, 3): 0.2})
        {(20, 0): 0.05}
    """
    if method.alpha is not None:
        return method.alpha
    if default is not None:
        return default
    if method.heads == "profile" and heads and head_alphas:
        return {h: float(head_alphas[h]) for h in heads}
    return DEFAULT_ALPHA


def _alpha_key(alpha: AlphaSpec) -> Any:
    """A JSON-ready, order-free form of an alpha for configuration keys (a float stays the float it was)."""
    if isinstance(alpha, dict):
        return sorted([int(h[0]), int(h[1]), float(a)] for h, a in alpha.items())
    return alpha


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


def load_heads(profile: Any, model: Any = None, allow_transfer: bool = False) -> tuple[tuple[Head, ...], str, Any]:
    """``(ranked heads, description, profile object)`` from a registry name, a path, a HeadProfile or a head list.

    With ``model``, a profile (named, a path or a :class:`~pasta_lens.profile.HeadProfile`) must have been made
    for it: :meth:`HeadProfile.validate_for` refuses another shape, and other weights unless
    ``allow_transfer=True``. This is the one place where evaluation turns a profile into heads.
    """
    if isinstance(profile, (str, os.PathLike)):
        loaded = load_profile(profile)
        if model is not None:
            loaded.validate_for(model, allow_transfer=allow_transfer)
        return ranked_heads(loaded), f"profile {profile}", loaded
    if hasattr(profile, "heads"):
        if model is not None and hasattr(profile, "validate_for"):
            profile.validate_for(model, allow_transfer=allow_transfer)
        return ranked_heads(profile), f"profile {getattr(profile, 'model_name', '')}".strip(), profile
    heads = ranked_heads(list(normalize_heads(profile)) if isinstance(profile, dict) else list(profile))
    return heads, f"{len(heads)} heads given", None


# ------------------------------------------------------------------------------------------------- scoring
def candidate_logprobs(model: Any, rendered: Rendered, candidates: Sequence[str], reduce: str = "sum",
                       heads: Optional[Sequence[Head]] = None, alpha: AlphaSpec = 0.01,
                       schedule: Union[str, Schedule, None] = "all", steering: Optional[Method] = None) -> list[float]:
    """Teacher-forced log-probability of each candidate continuation of one prompt (steered if ``heads``).

    One forward pass over a small batch: a row per distinct multi-token prefix ``prompt + candidate[:-1]``
    (right-padded: causal attention never sees the padding); single-token candidates are read at the prompt's
    last position of any row. ``reduce="sum"`` is the log-probability of the whole string, ``"mean"`` the
    per-token mean (ROME's CounterFact scores). The emphasis covers the prompt only; ``schedule`` treats the
    candidate's tokens as generated ones (``"prompt"`` leaves their rows unsteered, as in generation). ``steering``:
    a :class:`Method` of another steering method (:mod:`pasta_lens.methods`), which then steers every head.

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
    if steering is not None and steering.steering != "pasta":
        logits = steering_methods.run(model, tokens, em.key_mask, steering.steering, **dict(steering.params))
    else:
        ctx = steer(model, heads, em.key_mask, alpha, schedule=schedule) if heads else nullcontext()
        with torch.inference_mode(), ctx:
            logits = model(tokens)
    logp = torch.log_softmax(logits[:, n - 1:].float(), dim=-1)
    out = []
    for cand in ids:
        row = row_of[tuple(cand[:-1])] if len(cand) > 1 else 0
        total = sum(float(logp[row, i, t]) for i, t in enumerate(cand))
        out.append(total / len(cand) if reduce == "mean" else total)
    return out


def _generate(model: Any, rendered: Sequence[Rendered], heads: Optional[Sequence[Head]], alpha: AlphaSpec,
              max_new_tokens: int, schedule: Schedule = Schedule(), steering: Optional[Method] = None) -> list[str]:
    """Greedy generation for a batch of rendered queries, on the engine :func:`pasta_lens.generate` would pick:
    the HF twin where it gives the hooked result (:mod:`pasta_lens.hf_engine`, same tokens), else the hooks.
    Another steering method (``steering``, :mod:`pasta_lens.methods`) runs on the hooks."""
    em = emphasis_of(model, rendered)
    if steering is not None and steering.steering != "pasta":
        return decode_new(model, method_tokens(model, em, steering.steering, "all", max_new_tokens,
                                               params=dict(steering.params)))
    engine, twin, _ = select_engine(model)
    if engine == "hf":
        new = hf_generate_tokens(model, em, list(heads) if heads else None, alpha, schedule=schedule,
                                 max_new_tokens=max_new_tokens, twin=twin)
        return decode_new(model, new)
    ctx = steer(model, heads, em, alpha, schedule=schedule) if heads else nullcontext()
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


def _config_key(task: Task, method: Method, heads: Optional[Sequence[Head]], alpha: AlphaSpec, split: str,
                variant: str, max_new_tokens: int, model_name: str, schedule: Schedule = Schedule()) -> str:
    fields = [model_name, task.name, getattr(task, "synthetic", False), method.name, split, variant,
              method.marking, method.few_shot, _alpha_key(alpha) if heads else None, sorted(heads) if heads else None,
              max_new_tokens]
    if heads and schedule != Schedule():  # only when it matters: rows made before schedules existed still resume
        fields.append(str(schedule))
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of ``examples.jsonl``; a last line cut by an interruption is dropped (with a warning) and the
    file rewritten atomically without it. Any other bad line is an error naming the file and the line."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    cut = lines.pop() if lines else b""  # what follows the last newline: b"" for a complete file
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rows.append(_parse_row(path, number, line))
    if cut.strip():
        try:
            rows.append(_parse_row(path, len(lines) + 1, cut))  # complete JSON, only the newline was lost
        except ValueError:
            warnings.warn(f"{path}: dropped its last line {len(lines) + 1}, cut by an interruption (no newline, "
                          "not a whole row); that example will be recomputed.", stacklevel=3)
        _write_rows(path, rows)
    return rows


_ROW_KEYS = ("config", "uid", "outputs")


def _parse_row(path: Path, number: int, line: bytes) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}, line {number}: not a JSON row ({err}). Fix or delete that line (or the file, "
                         "to recompute everything); evaluate writes one JSON object per line.") from None
    if not isinstance(row, dict) or any(k not in row for k in _ROW_KEYS):
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise ValueError(f"{path}, line {number}: not an evaluation row (needs keys {list(_ROW_KEYS)}; got "
                         f"{keys}). Delete that line (or the file, to recompute everything).")
    return row


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


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
    alpha: Optional[float] = None,
    schedule: Union[str, Schedule, None] = None,
    batch_size: int = 8,
    resume: bool = True,
    seed: int = 0,
    variant: str = "default",
    max_new_tokens: Optional[int] = None,
    progress: bool = True,
    allow_transfer: bool = False,
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
        alpha: default steering strength (methods may override it with ``alpha=``). None (default): ``pasta``
            uses the profile's per-head alphas when it has them (a learned profile), every steered method else
            0.01; a number here wins over a profile's alphas (see :func:`method_alpha`).
        schedule: default steering schedule, ``"all"`` (the paper's), ``"prompt"``, ``"first:N"`` or
            ``"decay:G"`` (:class:`~pasta_lens.schedule.Schedule`; methods may override it with ``schedule=``).
            None (default): the schedule the profile was chosen with, ``profile.provenance["schedule"]``
            (written by ``pasta-lens profile --select-by metric``), else ``"all"``.
        batch_size: prompts per generation batch (left-padded).
        resume: reuse finished rows of ``out_dir/examples.jsonl`` with the same configuration. With False,
            the rows of the configurations this call computes are replaced; other rows (other tasks, methods or
            settings) are kept.
        seed: chooses the examples, the few-shot demonstrations and the random head set.
        variant: prompt variant of the tasks (e.g. ``"short"`` for JSON).
        max_new_tokens: generation length (default: each task's own).
        progress: show tqdm progress bars.
        allow_transfer: use a profile made on other weights of the same shape (e.g. a base model's profile on
            its fine-tune); without it such a profile is refused (see :meth:`HeadProfile.validate_for`).

    Raises:
        ValueError: bad arguments, a profile made for another model, or a malformed line in
            ``examples.jsonl`` (named by file and line).

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
    profile_heads, heads_note, profile_obj = (load_heads(source, model, allow_transfer) if source is not None
                                              else ((), "none", None))
    head_alphas = dict(getattr(profile_obj, "head_alphas", None) or {})
    recorded = (getattr(profile_obj, "provenance", None) or {}).get("schedule") if profile is not None else None
    # A profile= steers with its recorded schedule unless schedule= is given; heads= never reads one.
    default_schedule = resolve_schedule(profile_obj, schedule) if profile is not None else Schedule.parse(schedule)
    schedule_source = ("argument" if schedule is not None else
                       "the profile's provenance" if recorded is not None else "default")
    out = Path(out_dir) if out_dir is not None else None
    world = current_world()  # [distributed] torch.distributed's rank/size; one process: World(0, 1)
    rows_path = out / "examples.jsonl" if out is not None and world.is_main else None  # [distributed] rank 0 writes
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    model_name = _model_name(model)
    plan = []  # (task, method, heads, alpha, max_new, config, examples): every configuration this call computes
    for task in task_objs:
        examples = task.examples(split, n, seed)
        for method in method_objs:
            hs = resolve_heads(method, model, profile_heads, seed)
            a = method_alpha(method, alpha, hs, head_alphas)
            sched = method.schedule if method.schedule is not None else default_schedule
            max_new = max_new_tokens or task.max_new_tokens
            plan.append((task, method, hs, a, max_new,
                         _config_key(task, method, hs, a, split, variant, max_new, model_name, sched), examples, sched))
    stored = _read_rows(rows_path) if rows_path is not None else []
    if not resume and stored:  # start these configurations over; keep every other row in the file
        redo = {(config, ex.uid) for *_, config, examples, _ in plan for ex in examples}
        kept = [r for r in stored if (r["config"], r["uid"]) not in redo]
        if len(kept) != len(stored):
            _write_rows(rows_path, kept)  # type: ignore[arg-type]
        stored = []
    done = {(r["config"], r["uid"]): r for r in stored}
    done = broadcast(done, world)  # [distributed] every rank resumes from rank 0's rows
    all_rows: list[dict[str, Any]] = []
    method_heads: dict[str, Optional[tuple[Head, ...]]] = {}
    for task, method, hs, a, max_new, config, examples, sched in plan:
        method_heads[method.name] = hs
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
        run = lambda c: _run_chunk(model, task, method, c, rendering, hs, a, max_new, variant, batch_size, sched)
        for chunk, new_rows in map_batches(todo, batch_size, run, world):  # [distributed] batch b on rank b % N
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
    summary["config"] = {"model": model_name, "split": split, "n": n, "seed": seed,
                         "alpha": DEFAULT_ALPHA if alpha is None else alpha,
                         "pasta_alpha": ("the profile's per-head alphas" if alpha is None and head_alphas
                                         else DEFAULT_ALPHA if alpha is None else alpha),
                         "schedule": str(default_schedule), "schedule_source": schedule_source,
                         "variant": variant, "heads_source": heads_note, "n_profile_heads": len(profile_heads),
                         "heads": {m: (list(map(list, h)) if h else None) for m, h in method_heads.items()}}
    table = markdown_table(summary, task_objs, method_objs)
    if out is not None and world.is_main:  # [distributed]
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
        atomic_write_text(out / "table.md", table)
    return EvaluationResult(summary, table, tuple(all_rows), out)


def _run_chunk(model: Any, task: Task, method: Method, chunk: Sequence[Any], rendering: Rendering,
               heads: Optional[Sequence[Head]], alpha: AlphaSpec, max_new: int, variant: str,
               batch_size: int, schedule: Schedule = Schedule()) -> list[dict[str, Any]]:
    queries = {ex.uid: task.queries(ex, variant) for ex in chunk}
    results: dict[str, dict[str, Any]] = {ex.uid: {} for ex in chunk}
    prompts: dict[str, dict[str, str]] = {ex.uid: {} for ex in chunk}
    gen = [(ex.uid, q) for ex in chunk for q in queries[ex.uid] if q.kind == "generate"]
    for sub in _batches(gen, batch_size):
        rendered = [task.render(model, q.markup, rendering) for _, q in sub]
        for (uid, q), text in zip(sub, _generate(model, rendered, heads, alpha, max_new, schedule, method)):
            results[uid][q.key] = text
        for (uid, q), r in zip(sub, rendered):
            prompts[uid][q.key] = r.text
    for ex in chunk:
        for q in queries[ex.uid]:
            if q.kind == "choice":
                r = task.render(model, q.markup, rendering)
                results[ex.uid][q.key] = candidate_logprobs(model, r, q.candidates, q.reduce, heads, alpha,
                                                              schedule, method)
                prompts[ex.uid][q.key] = r.text
    rows = []
    for ex in chunk:
        main = queries[ex.uid][0].key
        rows.append({"prompt": prompts[ex.uid][main], "prompts": prompts[ex.uid], "outputs": results[ex.uid],
                     "metrics": task.metrics_from(ex, results[ex.uid])})
    return rows
