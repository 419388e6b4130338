"""CounterFact knowledge conflicts (Meng et al., 2022) as the PASTA paper uses them.

Each case is a fact ``(subject, relation prompt, true object)`` and a counterfactual object. The prompt puts the
old and the new fact in context and asks the question again; the new fact is emphasised:

    Previously, {prompt} {true object}. Currently, *{prompt} {new object}*. {question}

Metrics. The headline is the PASTA paper's, as its official code computes them (``evaluation/benchmarks.py``,
``counterfact_efficacy`` / ``counterfact_paraphrase``: one generated token, ``max_new_tokens=1``, its
log-softmax read at the two objects' **first tokens**):

* ES (efficacy) = ``[P(t_new) > P(t_old)]`` after the question itself, where ``t_new`` / ``t_old`` are the first
  tokens of ``" " + new object`` / ``" " + true object`` as they follow the prompt and ``P`` is the next-token
  probability at the prompt's last position (the official code compares ``exp`` of the log-probs with ``>``, so a
  tie, e.g. two objects that share their first token, counts as a failure);
* PS (paraphrase) = the same after each paraphrased question, averaged over the case's paraphrases;
* ES (ROME mean) / PS (ROME mean): ROME's version, the same comparisons on the **mean per-token** log-probs of the
  whole objects (kept as extra columns);
* fluency: ROME's n-gram entropy (:func:`pasta_lens.metrics.fluency`) of a greedy generation after the
  case's first generation prompt (only cases that have generation prompts).

Each choice query's result holds the per-token log-probs of both objects (``results["es.tokens"] = [[new
tokens], [old tokens]]``, as the evaluation harness stores them), from which both versions are computed.

The profiling objective is ``log P(new) - log P(old)`` at the answer position (summed log-prob of the new object's
tokens minus the old object's first-token log-prob, :func:`pasta_lens.objectives.target_logprob`).

Data: the real files shipped inside the package (``pasta_lens/data/counterfact/*.json.gz``, provenance and MIT
licence beside them; ``train`` / ``test``: the KnowledgeSpread split of CounterFact, fields
``case_id, prompt, subject, target_new, ground_truth, rephrase_prompt``; ``rome_format``: cases in the
original ROME layout with paraphrase and generation prompts, matched to the split files by ``case_id``), another
folder of the same files (``data_dir=`` or ``$PASTA_LENS_DATA``), or the canonical ``counterfact.json`` (ROME
layout, 21,919 cases) via :func:`load_rome_counterfact`.
Splits: ``train.json`` is divided into train and validation (1,000 cases; a tenth of smaller files) by a fixed
seeded shuffle;
``test.json`` is the test split. Never profile or tune on test.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pasta_lens.metrics import fluency
from pasta_lens.tasks.base import Query, Task, TaskExample, check_split, escape_markup, seeded_sample

VALIDATION_SIZE = 1000


SPLIT_FILES = ("train", "test", "rome_format")
"""The files a data folder holds under ``counterfact/``, each as ``NAME.json`` or ``NAME.json.gz``."""


def shipped_data_dir() -> Path:
    """The data folder installed with the package (``pasta_lens/data``; ``counterfact/*.json.gz`` inside)."""
    return Path(__file__).resolve().parents[1] / "data"


def default_data_dir() -> Path:
    """``$PASTA_LENS_DATA`` if set, else the copy shipped inside the package (:func:`shipped_data_dir`).

    The folder holds ``counterfact/{train,test,rome_format}.json``, each plain or gzipped (``.json.gz``).
    """
    env = os.environ.get("PASTA_LENS_DATA")
    return Path(env) if env else shipped_data_dir()


def data_file(data_dir: str | os.PathLike, name: str) -> Path:
    """``<data_dir>/counterfact/<name>.json``, or the ``.json.gz`` beside it when only that exists.

    Raises:
        FileNotFoundError: neither exists (the message names the folder to pass).
    """
    if name not in SPLIT_FILES:
        raise ValueError(f"Unknown CounterFact file {name!r}; expected one of {SPLIT_FILES}.")
    root = Path(data_dir) / "counterfact"
    for path in (root / f"{name}.json", root / f"{name}.json.gz"):
        if path.exists():
            return path
    raise FileNotFoundError(
        f"No such file: {root / name}.json (or .json.gz). Pass data_dir= (or set "
        "PASTA_LENS_DATA) to a folder holding counterfact/{train,test,rome_format}.json[.gz], "
        "or unset PASTA_LENS_DATA to use the copy shipped with pasta_lens."
    )


@dataclass(frozen=True)
class Fact(TaskExample):
    """One CounterFact case.

    Attributes:
        case_id: CounterFact's case id.
        subject: the subject (``"Danielle Darrieux"``).
        prompt: the question with the subject filled in (``"The mother tongue of Danielle Darrieux is"``).
        target_new: the counterfactual object (``"English"``).
        target_true: the true object (``"French"``).
        paraphrases: paraphrased questions (for PS).
        generation_prompts: prompts for the fluency generation (may be empty).
    """

    case_id: int = -1
    subject: str = ""
    prompt: str = ""
    target_new: str = ""
    target_true: str = ""
    paraphrases: tuple[str, ...] = ()
    generation_prompts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("prompt", "target_new", "target_true"):
            if not str(getattr(self, name)).strip():
                raise ValueError(f"CounterFact case {self.case_id}: {name} is empty.")
        if self.target_new.strip() == self.target_true.strip():
            raise ValueError(f"CounterFact case {self.case_id}: target_new equals target_true.")


def _load_json(path: str | os.PathLike) -> Any:
    """A JSON file, gunzipped first when its name ends in ``.gz``."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No such file: {path}. Pass data_dir= (or set PASTA_LENS_DATA) to the folder "
            "holding counterfact/{train,test,rome_format}.json[.gz]."
        )
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def load_rome_counterfact(source: str | os.PathLike | Sequence[dict]) -> list[Fact]:
    """Cases in ROME's layout (the canonical ``counterfact.json``, or ``rome_format.json``; ``.gz`` also read).

    Each record has ``case_id`` and ``requested_rewrite = {prompt: "{} ...", subject, target_new: {str},
    target_true: {str}}``, ``paraphrase_prompts`` and ``generation_prompts``.

    Example:
        >>> facts = load_rome_counterfact("counterfact.json")   # https://rome.baulab.info/data/dsets/
        >>> facts[0].prompt, facts[0].target_new
        ('The mother tongue of Danielle Darrieux is', 'English')
    """
    rows = _load_json(source) if isinstance(source, (str, os.PathLike)) else source
    out = []
    for row in rows:
        try:
            rw = row["requested_rewrite"]
            prompt = rw["prompt"].format(rw["subject"]) if "{}" in rw["prompt"] else rw["prompt"]
            out.append(
                Fact(
                    uid=f"counterfact:{row['case_id']}",
                    source="counterfact",
                    case_id=int(row["case_id"]),
                    subject=rw["subject"],
                    prompt=prompt,
                    target_new=rw["target_new"]["str"],
                    target_true=rw["target_true"]["str"],
                    paraphrases=tuple(row.get("paraphrase_prompts", ())),
                    generation_prompts=tuple(row.get("generation_prompts", ())),
                )
            )
        except (KeyError, TypeError, AttributeError):
            raise ValueError(
                f"Not a ROME-format CounterFact record (requested_rewrite with prompt, subject, "
                f"target_new.str, target_true.str): {str(row)[:200]}"
            ) from None
    return out


def load_counterfact_split(source: str | os.PathLike | Sequence[dict], rome: Sequence[Fact] = ()) -> list[Fact]:
    """Cases of a flat split file (``case_id, prompt, subject, target_new, ground_truth, rephrase_prompt``), in
    file order; a path ending in ``.gz`` is gunzipped.

    Cases also present in ``rome`` (by ``case_id``) get its paraphrase and generation prompts as well.
    """
    rows = _load_json(source) if isinstance(source, (str, os.PathLike)) else source
    by_id = {f.case_id: f for f in rome}
    out = []
    for row in rows:
        try:
            cid = int(row["case_id"])
            extra = by_id.get(cid)
            paraphrases = tuple(p for p in (row.get("rephrase_prompt"),) if p)
            if extra is not None:
                paraphrases += tuple(p for p in extra.paraphrases if p not in paraphrases)
            out.append(
                Fact(
                    uid=f"counterfact:{cid}",
                    source="counterfact",
                    case_id=cid,
                    subject=row["subject"],
                    prompt=row["prompt"],
                    target_new=row["target_new"],
                    target_true=row["ground_truth"],
                    paraphrases=paraphrases,
                    generation_prompts=extra.generation_prompts if extra is not None else (),
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"Not a CounterFact split record (case_id, prompt, subject, target_new, "
                f"ground_truth): {str(row)[:200]} ({err})"
            ) from None
    return out


@functools.lru_cache(maxsize=4)
def _load_splits(data_dir: str) -> dict[str, tuple[Fact, ...]]:
    try:
        rome = load_rome_counterfact(data_file(data_dir, "rome_format"))
    except FileNotFoundError:  # optional: without it, cases have no generation prompts and one paraphrase
        rome = []
    train_all = load_counterfact_split(data_file(data_dir, "train"), rome)
    test = load_counterfact_split(data_file(data_dir, "test"), rome)
    shuffled = seeded_sample(sorted(train_all, key=lambda f: f.case_id), None, 0, "counterfact-partition")
    k = min(VALIDATION_SIZE, len(shuffled) // 10)  # 1,000 of the real 10,000; a tenth of a small file
    return {"train": tuple(shuffled[k:]), "validation": tuple(shuffled[:k]), "test": tuple(test)}


def first_token_wins(token_logprobs: Sequence[Sequence[float]]) -> float:
    """1.0 when the new object's first token is more probable than the old one's, else 0.0.

    ``token_logprobs`` is ``[[new object's per-token log-probs], [old object's]]``; only the first of each counts.
    Probabilities are compared as the official PASTA code compares them (``np.exp(logp_new) > np.exp(logp_old)``),
    so equal first tokens are a failure.

    Example:
        >>> first_token_wins([[-0.5, -9.0], [-1.2]]), first_token_wins([[-1.2, -0.1], [-1.2, -3.0]])
        (1.0, 0.0)
    """
    (new, *_), (old, *_) = token_logprobs[0], token_logprobs[1]
    return float(math.exp(new) > math.exp(old))


def partition(facts: Sequence[Fact]) -> dict[str, tuple[Fact, ...]]:
    """A fixed 80/10/10 train/validation/test partition of one list of cases (e.g. the canonical file)."""
    shuffled = seeded_sample(sorted(facts, key=lambda f: f.case_id), None, 0, "counterfact-partition")
    k1, k2 = int(0.8 * len(shuffled)), int(0.9 * len(shuffled))
    return {"train": tuple(shuffled[:k1]), "validation": tuple(shuffled[k1:k2]), "test": tuple(shuffled[k2:])}


class CounterFactTask(Task[Fact]):
    """CounterFact: ES and PS by first-token probability (the paper's), their ROME mean versions, fluency.

    Args:
        data_dir: folder with ``counterfact/train.json``, ``test.json`` and ``rome_format.json``, each plain or
            ``.json.gz`` (default :func:`default_data_dir`: ``$PASTA_LENS_DATA``, else the shipped copy).
        facts: instead, one list of cases (e.g. ``load_rome_counterfact("counterfact.json")``), partitioned
            80/10/10 by a fixed seed.
    """

    name = "counterfact"
    chat = False
    metrics = ("es", "ps", "es_rome", "ps_rome", "fluency")
    average_metrics = ("es", "ps")
    max_new_tokens = 48

    def __init__(self, data_dir: str | os.PathLike | None = None, facts: Sequence[Fact] | None = None) -> None:
        if facts is not None and data_dir is not None:
            raise ValueError("Pass data_dir or facts, not both.")
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self._splits = partition(facts) if facts is not None else None

    def splits(self) -> dict[str, tuple[Fact, ...]]:
        return self._splits if self._splits is not None else _load_splits(str(self.data_dir))

    def examples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[Fact]:
        """``n`` cases of ``split``; cases with generation prompts come first (so that a small ``n`` still
        measures fluency), each group in a seeded order."""
        check_split(split)
        cases = self.splits()[split]
        with_gen = [f for f in cases if f.generation_prompts]
        without = [f for f in cases if not f.generation_prompts]
        ordered = seeded_sample(with_gen, None, seed, f"counterfact-{split}-gen") + seeded_sample(
            without, None, seed, f"counterfact-{split}"
        )
        return ordered if n is None else ordered[:n]

    def _markup(self, fact: Fact, question: str) -> str:
        old = escape_markup(f"{fact.prompt} {fact.target_true}")
        new = escape_markup(f"{fact.prompt} {fact.target_new}")
        return f"Previously, {old}. Currently, *{new}*. {escape_markup(question)}"

    def prompt(self, example: Fact, variant: str = "default") -> str:
        self.check_variant(variant)
        return self._markup(example, example.prompt)

    def answer(self, example: Fact) -> str:
        return " " + example.target_new.strip()

    def contrast(self, example: Fact) -> str:
        return " " + example.target_true.strip()

    def queries(self, example: Fact, variant: str = "default") -> list[Query]:
        cands = (self.answer(example), self.contrast(example))
        out = [Query("es", self.prompt(example, variant), "choice", cands, "mean")]
        out += [
            Query(f"ps{i}", self._markup(example, p), "choice", cands, "mean")
            for i, p in enumerate(example.paraphrases)
        ]
        if example.generation_prompts:
            out.append(Query("gen", self._markup(example, example.generation_prompts[0])))
        return out

    def metrics_from(self, example: Fact, results: dict[str, Any]) -> dict[str, float]:
        """ES / PS by first-token probabilities (from ``KEY.tokens``), their ROME versions by the mean per-token
        log-probs (``KEY``), fluency of the generation; a metric whose inputs are missing is left out."""
        out: dict[str, float] = {}
        paraphrases = sorted(k for k in results if k.startswith("ps") and not k.endswith(".tokens"))
        for name, keys in (("es", ["es"] if "es" in results else []), ("ps", paraphrases)):
            first = [first_token_wins(results[f"{k}.tokens"]) for k in keys if f"{k}.tokens" in results]
            if first:
                out[name] = sum(first) / len(first)
            rome = [float(results[k][0] > results[k][1]) for k in keys]
            if rome:
                out[f"{name}_rome"] = sum(rome) / len(rome)
        for key in ("gen", "output"):
            if key in results:
                out["fluency"] = fluency(str(results[key]))
        return out
