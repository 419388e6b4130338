"""What the learner fits and what it keeps: the model's own continuations as targets, and the reference model a
protected task is compared with.

A gold answer is text the model may never write; its teacher-forced log-prob then rewards steering towards a
style, not towards carrying out the instruction. :func:`own_continuations` replaces an example's target with the
model's own greedy continuation of its prompt (unsteered, or steered by ``base`` heads), optionally rewritten by
a task rule (pronoun: "She is a dentist." -> "They are a dentist."):

    target(ex) = rewrite( greedy_F(model [steered by base], prompt(ex)) )  [+ end-of-turn marker when reached]

The protect term keeps a task that is *not* trained for as a reference model has it (:func:`reference_hooks`):
the unsteered model (``"unsteered"``), or the model steered by the ``base`` heads alone (``"base"``, so that the
learned strengths may not undo what a selected profile already does on that task).

The content term keeps the document readable (:func:`content_targets`): a context-QA prompt (document, question,
emphasised format instruction) with the unsteered model's own greedy answer as target, and as its ``focus`` the
answer positions whose token is copied from the document (:func:`document_positions`):

    focus(ex) = { i : the text of answer token x_i overlaps a word of the answer that is also a word of the
                      document (case-insensitive; 2+ characters or a number; not a stopword) }

so the term compares the steered model with the unsteered one where the answer reads the document ("Thursday",
"204"), not where a format instruction may rightly change it ("Answer:", "{").
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from pasta_lens.generation import generate_new_tokens
from pasta_lens.metrics import STOPWORDS
from pasta_lens.objectives import ProfilingExample, target_logprob
from pasta_lens.plan import Head, ScheduleSpec
from pasta_lens.profiling.learned.config import PROTECT_REFERENCES
from pasta_lens.profiling.learned.strengths import learned_hooks
from pasta_lens.steering import steer
from pasta_lens.tasks.base import answer_ids

_WORD = re.compile(r"[^\W_]+")  # a word: a run of letters and digits


def reference_hooks(
    shape: tuple[int, int],
    alpha_min: float,
    key_mask: Bool[Tensor, "batch prompt"],
    schedule: ScheduleSpec,
    base: Mapping[Head, float] | None,
    reference: str,
) -> list[tuple[str, Callable[[Tensor, Any], Tensor]]]:
    """The hooks of the model a protected answer is kept as: none (``"unsteered"``), or the ``base`` heads alone
    at their alphas on ``schedule``'s rows, every learned head at alpha 1 (``"base"``).

    Example:
        >>> with model.hooks(fwd_hooks=reference_hooks((30, 9), 0.01, ex.key_mask, "prompt", base, "base")):
        ...     kept = model(ex.tokens)                      # the base profile's own model
    """
    if reference not in PROTECT_REFERENCES:
        raise ValueError(f"reference must be one of {PROTECT_REFERENCES}; got {reference!r}.")
    if reference == "unsteered":
        return []
    if not base:
        raise ValueError(
            "reference='base' needs base heads (LearnedConfig(base=...)): without them it is the "
            "unsteered model; pass reference='unsteered'."
        )
    return learned_hooks(torch.full(tuple(shape), -math.inf), alpha_min, key_mask, schedule, base)


def own_continuations(
    model: Any,
    examples: Sequence[ProfilingExample],
    max_new_tokens: int,
    base: Mapping[Head, float] | None = None,
    schedule: ScheduleSpec = None,
    rewrite: Callable[[str], str] | None = None,
) -> list[ProfilingExample]:
    """The examples with their target replaced by the *unsteered* model's own greedy continuation of the prompt:
    at most ``max_new_tokens`` tokens, cut after the end-of-turn marker when the example ends the turn (``close``
    set: the marker is the tokens after it). With ``base`` (``{(layer, head): alpha}``) the continuation is the
    model's steered by those heads (each example's key mask, ``schedule``'s rows): the targets of a protect term
    whose reference is the base (``LearnedConfig(protect_reference="base")``).

    The protect term on these targets keeps what free generation does: the first-token decision weighs
    1/``max_new_tokens`` of the KL, where on a long teacher-forced gold answer it would weigh 1/len(answer).
    Greedy, with the KV cache (:func:`pasta_lens.generation.generate_new_tokens`); the objective of a result is the
    log-prob of its own continuation.

    ``rewrite`` (text -> text, e.g. :meth:`Task.correct <pasta_lens.tasks.base.Task.correct>`): the continuation is
    decoded, rewritten and tokenised again (the end-of-turn marker, when reached, kept after it): a *task* target
    that is the model's own answer with the instruction carried out (pronoun: "She is a dentist." -> "They are a
    dentist."), where the gold answer is text the model never writes. The ``close`` of such a result is the
    rewritten answer's last token when the marker was reached, else None.

    Example:
        >>> protect = own_continuations(model, get_task("pronoun").profiling_examples(model, n=40, end_turn=True), 16)
        >>> pronoun = get_task("pronoun")
        >>> train = own_continuations(model, pronoun.profiling_examples(model, n=40, end_turn=True), 64,
        ...                           rewrite=pronoun.correct)
    """
    if isinstance(max_new_tokens, bool) or int(max_new_tokens) != max_new_tokens or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer; got {max_new_tokens!r}.")
    out = []
    for ex in examples:
        if ex.attention_mask is not None and not bool(ex.attention_mask.all()):
            raise ValueError("own_continuations takes unpadded examples (one prompt each, no attention mask).")
        prompt = ex.tokens[:, : ex.n_prompt].to(model.cfg.device)
        stop = [] if ex.close is None else ex.tokens[0, ex.close + 1 :].tolist()
        steering = (
            contextlib.nullcontext()
            if not base
            else steer(model, list(base), ex.key_mask, alpha=dict(base), schedule=schedule)
        )
        with steering:
            generated = generate_new_tokens(model, prompt, max_new_tokens=int(max_new_tokens), stop_at_eos=False)
        new: list[int] = generated[0].tolist()
        ended = False
        for end in range(len(stop), len(new) + 1):  # cut after the first end-of-turn marker
            if stop and new[end - len(stop) : end] == stop:
                new, ended = new[:end], True
                break
        close = None
        if rewrite is not None:
            body = new[: len(new) - len(stop)] if ended else new
            text = rewrite(model.tokenizer.decode(body))
            new = (answer_ids(model, text).tolist() if text else []) + (stop if ended else [])
            if not new:
                raise ValueError(f"rewrite left nothing of the continuation {model.tokenizer.decode(body)!r}.")
            close = ex.n_prompt + len(new) - len(stop) - 1 if ended and len(new) > len(stop) else None
        target = torch.tensor(new, dtype=ex.tokens.dtype)
        tokens = torch.cat([ex.tokens[:, : ex.n_prompt].cpu(), target[None]], dim=1)
        out.append(
            ProfilingExample(
                tokens=tokens,
                key_mask=ex.key_mask,
                task=ex.task,
                objective=target_logprob(ex.n_prompt, target),
                close=close,
            )
        )
    return out


def document_positions(model: Any, ex: ProfilingExample, document: str) -> tuple[int, ...]:
    """Positions (in ``ex.tokens``) of the target tokens that spell a word of ``document``: the target is decoded,
    its words (runs of letters and digits) that are also words of the document (case-insensitive; two or more
    characters or a number; not a stopword) are found, and every target token whose text overlaps one of them is
    in. Empty when the answer copies no word of the document.

    Example:
        >>> document_positions(model, ex, "The design review is at 11:30 in room 310.")   # the tokens of "11", "30"
    """
    words = {w.lower() for w in _WORD.findall(document)}
    keep = {w for w in words if (len(w) >= 2 or w.isdigit()) and w not in STOPWORDS}
    ids = [int(t) for t in ex.tokens[0, ex.n_prompt :].tolist()]
    text = str(model.tokenizer.decode(ids))
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text) if m.group().lower() in keep]
    ends = [len(str(model.tokenizer.decode(ids[: j + 1]))) for j in range(len(ids))]
    out = []
    for j, end in enumerate(ends):
        start = ends[j - 1] if j else 0
        if any(start < e and s < end for s, e in spans):
            out.append(ex.n_prompt + j)
    return tuple(out)


def content_targets(
    model: Any, examples: Sequence[ProfilingExample], documents: Sequence[str], max_new_tokens: int
) -> list[ProfilingExample]:
    """The content term's examples: each prompt with the *unsteered* model's own greedy answer as target
    (:func:`own_continuations`, at most ``max_new_tokens`` tokens, cut at the end of turn when the example ends it)
    and, as ``focus``, the answer positions copied from its document (:func:`document_positions`). Examples whose
    answer copies nothing of the document carry no content to keep and are left out.

    Computed once before training, like the other targets; the learner compares the steered model's next-token
    distribution at the focus positions with the unsteered model's (``content_weight`` of
    :class:`~pasta_lens.profiling.LearnedConfig`).

    Raises:
        ValueError: ``documents`` does not match ``examples`` one to one, or no answer copies anything.

    Example:
        >>> task = get_task("context_qa")
        >>> exs = task.examples("train", n=40)
        >>> content = content_targets(model, task.profiling_examples(model, n=40, end_turn=True),
        ...                           [e.document for e in exs], 24)
    """
    if len(documents) != len(examples):
        raise ValueError(
            f"content_targets needs one document per example; got {len(documents)} documents for "
            f"{len(examples)} examples (context-QA: [e.document for e in task.examples(split, n, seed)])."
        )
    out = []
    for ex, document in zip(own_continuations(model, examples, max_new_tokens), documents):
        focus = document_positions(model, ex, document)
        if focus:
            out.append(dataclasses.replace(ex, focus=focus))
    if not out:
        raise ValueError(
            f"None of the {len(examples)} unsteered answers copies a word of its document, so the content term has "
            "nothing to keep: give more examples or a longer answer (max_new_tokens), or set content_weight=0."
        )
    return out
