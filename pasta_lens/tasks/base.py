"""What every task shares: examples, marked prompts, how a prompt is rendered for a method, the profiling objective.

A task turns one example into *queries*. A query is a prompt in emphasis markup (``"... *instruction* ..."``)
plus what to do with it:

* ``generate``: greedy generation, scored on the text (JSON formatting, pronoun changing, CounterFact fluency);
* ``choice``: the log-probability of each candidate continuation under teacher forcing (BiasBios: 28
  occupations; CounterFact: new vs old object).

How a prompt is shown to the model depends on the evaluation method (:class:`Rendering`): markers removed
(zero-shot, and every steered method, whose emphasis is the key mask), or left in the text as ``*...*`` or
``"..."`` (the marked baselines, unsteered), optionally after few-shot demonstrations. Chat tasks render the
model's chat template around the user turn (demonstrations become earlier user/assistant turns); plain tasks are
continued as text (with the model's default BOS). :func:`render` returns the final string and the emphasised
character ranges in it, so that profiling and evaluation tokenise exactly the same way
(``emphasize(model, text, char_ranges=...)``).

The profiling objective of an example is the teacher-forced log-probability of its gold answer after the rendered
prompt (:func:`pasta_lens.objectives.target_logprob`), with the emphasis over the prompt only.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import torch
from jaxtyping import Int
from torch import Tensor

from pasta_lens.chat import assistant_turn_end, render_chat
from pasta_lens.objectives import ProfilingExample, target_logprob
from pasta_lens.spans import CharSpan, Emphasis, emphasize, parse_markup

SPLITS = ("train", "validation", "test")
Marking = Literal["none", "*", '"']
MARKINGS: tuple[str, ...] = ("none", "*", '"')


def escape_markup(text: str) -> str:
    """Escape backslashes and asterisks so that ``text`` is literal inside emphasis markup.

    Example:
        >>> escape_markup("2 * 3")
        '2 \\\\* 3'
    """
    return text.replace("\\", "\\\\").replace("*", "\\*")


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(
            f"Unknown split {split!r}; use one of {SPLITS} (profile and tune on 'train' or "
            "'validation', report on 'test')."
        )


@dataclass(frozen=True)
class TaskExample:
    """Base class of task examples: a unique id and whether the example is synthetic.

    Attributes:
        uid: unique within its task and split (used to resume evaluations).
        source: where the example comes from (``"synthetic"``, ``"bias_in_bios"``, ``"counterfact"``, ...).
    """

    uid: str
    source: str

    def __post_init__(self) -> None:
        if not self.uid:
            raise ValueError("A task example needs a non-empty uid (used to resume evaluations).")

    @property
    def synthetic(self) -> bool:
        return self.source == "synthetic"


@dataclass(frozen=True)
class Query:
    """One prompt of an example and what to do with it.

    Attributes:
        key: name of the query within the example (``"output"``, ``"es"``, ``"ps0"``, ``"gen"``).
        markup: the prompt with the emphasised span(s) marked ``*...*`` (literal asterisks escaped).
        kind: ``"generate"`` (greedy generation) or ``"choice"`` (log-probs of ``candidates``).
        candidates: for ``choice``, the continuations to score (each with its leading space).
        reduce: for ``choice``, ``"sum"`` (probability of the whole string) or ``"mean"`` (per-token, as ROME).
    """

    key: str
    markup: str
    kind: Literal["generate", "choice"] = "generate"
    candidates: tuple[str, ...] = ()
    reduce: Literal["sum", "mean"] = "sum"

    def __post_init__(self) -> None:
        if self.kind not in ("generate", "choice"):
            raise ValueError(f"Query.kind must be 'generate' or 'choice'; got {self.kind!r}.")
        if self.kind == "choice" and len(self.candidates) < 2:
            raise ValueError("A choice query needs at least two candidates.")
        if self.reduce not in ("sum", "mean"):
            raise ValueError(f"Query.reduce must be 'sum' or 'mean'; got {self.reduce!r}.")
        if not parse_markup(self.markup)[1]:  # raises on bad markup; an emphasis is required
            raise ValueError(f"Query {self.key!r} has no emphasised span; mark one with *...*.")


@dataclass(frozen=True)
class Rendering:
    """How prompts are shown to the model.

    Attributes:
        marking: ``"none"`` (markers removed), ``"*"`` or ``'"'`` (markers left in the text around the span).
        demos: few-shot demonstrations ``(markup prompt, answer)`` put before the query.
    """

    marking: str = "none"
    demos: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.marking not in MARKINGS:
            raise ValueError(f"Rendering.marking must be one of {MARKINGS}; got {self.marking!r}.")


@dataclass(frozen=True)
class Rendered:
    """The string fed to the tokenizer and the emphasised character ranges in it."""

    text: str
    char_spans: tuple[CharSpan, ...]
    prepend_bos: bool | None  # None: the model's default (plain text); False for chat-templated text

    def __post_init__(self) -> None:
        if not self.char_spans:
            raise ValueError("Rendered needs at least one emphasised character range.")


def _apply_marking(markup: str, marking: str) -> tuple[str, tuple[CharSpan, ...]]:
    clean, spans = parse_markup(markup)
    if marking == "none":
        return clean, spans
    out, new_spans, last = [], [], 0
    for s, e in spans:
        out.append(clean[last:s])
        start = sum(len(p) for p in out)
        out.append(marking + clean[s:e] + marking)
        new_spans.append((start, start + e - s + 2 * len(marking)))
        last = e
    out.append(clean[last:])
    return "".join(out), tuple(new_spans)


def _tokenizer(model_or_tokenizer: Any) -> Any:
    return getattr(model_or_tokenizer, "tokenizer", None) or model_or_tokenizer


def render(
    model_or_tokenizer: Any,
    markup: str,
    *,
    chat: bool,
    rendering: Rendering = Rendering(),
    system_prompt: str | None = None,
) -> Rendered:
    """The final prompt string for ``markup`` under ``rendering`` and where its emphasis lies.

    Args:
        model_or_tokenizer: a TransformerLens model or a fast tokenizer (for the chat template).
        markup: the query prompt with ``*...*`` marking the emphasis.
        chat: render the chat template (user turn; demonstrations as earlier user/assistant turns).
        rendering: marking and few-shot demonstrations.

    Example:
        >>> render(tok, "Maria is a nurse. *Answer in JSON.*", chat=False).char_spans
        ((18, 33),)
    """
    text, spans = _apply_marking(markup, rendering.marking)
    demo_pairs = [(_apply_marking(p, rendering.marking)[0], a) for p, a in rendering.demos]
    if chat:
        history = []
        for p, a in demo_pairs:
            history += [{"role": "user", "content": p}, {"role": "assistant", "content": a}]
        turn = render_chat(model_or_tokenizer, text, system_prompt=system_prompt, history=history)
        full, at = turn.text, turn.start
        prepend_bos: bool | None = False
    else:
        prefix = "".join(f"{p}{a}\n\n" for p, a in demo_pairs)  # plain answers carry their leading space
        full, at, prepend_bos = prefix + text, len(prefix), None
    return Rendered(full, tuple((s + at, e + at) for s, e in spans), prepend_bos)


def emphasis_of(model: Any, rendered: Sequence[Rendered]) -> Emphasis:
    """Tokenise rendered prompts as one left-padded batch (all chat or all plain)."""
    flags = {r.prepend_bos for r in rendered}
    if len(flags) != 1:
        raise ValueError("A batch mixes chat-templated and plain prompts; batch them separately.")
    return emphasize(
        model, [r.text for r in rendered], char_ranges=[r.char_spans for r in rendered], prepend_bos=flags.pop()
    )


def answer_ids(model: Any, answer: str) -> Int[Tensor, " n"]:
    """Token ids of an answer continued after a prompt (no special tokens)."""
    ids = _tokenizer(model)(answer, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"The answer {answer!r} tokenises to nothing.")
    return torch.tensor(ids, dtype=torch.long)


ExampleT = TypeVar("ExampleT", bound=TaskExample)
"""The example class of a task (``Task[Fact]``: CounterFact's methods take and return :class:`Fact`)."""


class Task(Generic[ExampleT]):
    """Base class of the tasks, generic in their example class. Subclasses set the class attributes and implement
    the abstract methods.

    Attributes (class level):
        name: registry name.
        chat: whether prompts are rendered with the chat template (instruct models; decided per task).
        metrics: metric names :meth:`metrics_from` returns.
        average_metrics: the metrics that enter the table's average column.
        variants: prompt variants accepted by :meth:`prompt`.
        max_new_tokens: generation length for ``generate`` queries.
    """

    name = ""
    chat = False
    metrics: tuple[str, ...] = ()
    average_metrics: tuple[str, ...] = ()
    variants: tuple[str, ...] = ("default",)
    max_new_tokens = 48

    def examples(self, split: str = "train", n: int | None = None, seed: int = 0) -> list[ExampleT]:
        """``n`` examples of ``split`` (all when None), chosen and ordered by ``seed``."""
        raise NotImplementedError

    def prompt(self, example: ExampleT, variant: str = "default") -> str:
        """The main prompt of ``example`` with the emphasis marked ``*...*``."""
        raise NotImplementedError

    def answer(self, example: ExampleT) -> str:
        """The gold answer after :meth:`prompt` (the profiling target and the few-shot demonstration)."""
        raise NotImplementedError

    def queries(self, example: ExampleT, variant: str = "default") -> list[Query]:
        """Every prompt evaluated for ``example``; by default one generation of :meth:`prompt`."""
        return [Query("output", self.prompt(example, variant))]

    def metrics_from(self, example: ExampleT, results: dict[str, Any]) -> dict[str, float]:
        """Metric values of one example from its query results (generated text, or candidate log-probs)."""
        raise NotImplementedError

    def score(self, example: ExampleT, output_text: str) -> dict[str, float]:
        """Metrics of one generated output of the main prompt (generation tasks)."""
        return self.metrics_from(example, {"output": output_text})

    def check_variant(self, variant: str) -> None:
        if variant not in self.variants:
            raise ValueError(f"Task {self.name!r} has prompt variants {self.variants}; got {variant!r}.")

    def demos(self, n: int = 3, seed: int = 0) -> tuple[tuple[str, str], ...]:
        """``n`` few-shot demonstrations ``(prompt markup, answer)`` from the train split."""
        return tuple((self.prompt(ex), self.answer(ex)) for ex in self.examples("train", n, seed=seed + 1000))

    def render(self, model: Any, markup: str, rendering: Rendering = Rendering()) -> Rendered:
        return render(model, markup, chat=self.chat, rendering=rendering)

    def profiling_example(
        self, model: Any, example: ExampleT, variant: str = "default", end_turn: bool = False
    ) -> ProfilingExample:
        """Prompt (rendered as in evaluation, markers removed) + gold answer, and its log-prob objective.

        ``end_turn``: for a chat task, the target is the gold answer *followed by the template's end-of-turn
        marker* (:func:`~pasta_lens.chat.assistant_turn_end`, ``<|im_end|>`` on SmolLM2), so the objective also
        rewards ending the answer there, as a chat model must to stop rather than run on, and the example's
        ``close`` is the position of the answer's last token (see ``close_weight`` of
        :func:`~pasta_lens.profiling.learn_alphas`). Plain-text tasks have no turn to end and ignore it.
        """
        em = emphasis_of(model, [self.render(model, self.prompt(example, variant))])
        target = answer_ids(model, self.answer(example))
        n_prompt = int(em.tokens.shape[1])
        close = None
        if end_turn and self.chat:
            close = n_prompt + int(target.shape[0]) - 1  # the answer's last token, where it must stop
            target = torch.cat([target, answer_ids(model, assistant_turn_end(model))])
        target = target.to(em.tokens.device)
        contrast = self.contrast(example)
        contrast_ids = answer_ids(model, contrast).to(em.tokens.device) if contrast is not None else None
        tokens = torch.cat([em.tokens, target[None]], dim=1)
        focus = focus_positions(model, self.answer(example), self.focus_text(example), n_prompt)
        return ProfilingExample(
            tokens=tokens,
            key_mask=em.key_mask,
            objective=target_logprob(n_prompt, target, contrast_ids),
            task=self.name,
            close=close,
            focus=focus,
        )

    corrects_answers = False
    """Whether :meth:`correct` applies the task's instruction to *any* model answer without knowing the example (the
    targets of ``own_continuations(..., rewrite=task.correct)``: what the model writes, with the instruction carried
    out). Tasks whose rule depends on the example (which instruction it carries) say so through :meth:`corrector`."""

    @property
    def data_key(self) -> str | None:
        """Which data a task object reads when its class can read several (``"implied"`` for implied biographies);
        an evaluation keeps it in each row's configuration key. None: the task's one (or original) source."""
        return None

    def correct(self, answer: str, example: ExampleT | None = None) -> str:
        """A model's own answer with the task's instruction carried out on it (pronoun: every gendered pronoun
        replaced by its "they" form), the target that stays closest to what the model writes. Tasks with
        ``corrects_answers`` ignore ``example``; tasks whose rule depends on the example need it."""
        raise ValueError(
            f"Task {self.name!r} has no rule that corrects a model's own answer; tasks that have one: "
            "pronoun (any answer), instructions (answers to its correctable instruction types)."
        )

    def corrector(self, example: ExampleT) -> Callable[[str], str] | None:
        """The rule that carries ``example``'s instruction out on a model's answer (text -> text), or None when the
        task has none for it. Per example, so a learner can build own-answer targets one example at a time:
        ``own_continuations(model, [p], F, rewrite=task.corrector(ex))`` for each ``(ex, p)`` of
        ``zip(task.examples(split, n, seed), task.profiling_examples(model, split, n, seed))``."""
        return self.correct if self.corrects_answers else None

    def focus_text(self, example: ExampleT) -> str | None:
        """The part of the gold answer that carries its content (its last occurrence is the example's ``focus``;
        ``focus_weight`` of :func:`~pasta_lens.profiling.learn_alphas` weights its tokens); None: no focus."""
        return None

    def contrast(self, example: ExampleT) -> str | None:
        """An answer whose first-token log-prob is subtracted in the objective (CounterFact: the old object)."""
        return None

    def profiling_examples(
        self,
        model: Any,
        split: str = "train",
        n: int = 32,
        seed: int = 0,
        variant: str = "default",
        end_turn: bool = False,
    ) -> list[ProfilingExample]:
        """``n`` profiling examples from ``split`` (never profile on 'test'); ``end_turn`` as in
        :meth:`profiling_example`.

        Example:
            >>> exs = get_task("json").profiling_examples(model, n=8)
            >>> exs[0].objective(model(exs[0].tokens))  # log-prob of the gold JSON answer, shape [1]
        """
        if split == "test":
            raise ValueError(
                "Profiling on the test split would leak it into the reported results; use "
                "split='train' (or 'validation')."
            )
        return [self.profiling_example(model, ex, variant, end_turn) for ex in self.examples(split, n, seed)]


def focus_positions(model: Any, answer: str, part: str | None, n_prompt: int) -> tuple[int, ...] | None:
    """Positions (in prompt + answer tokens) of the answer tokens that overlap the last occurrence of ``part`` in
    ``answer``: token ``j`` is in when its decoded text ends after ``part`` starts and the text before it ends
    before ``part`` ends. None when ``part`` is None.

    Example:
        >>> focus_positions(model, '{"name": "Ann", "occupation": "nurse"}', "nurse", n_prompt=40)  # where "nurse" is
    """
    if part is None:
        return None
    if part not in answer:
        raise ValueError(f"The focus {part!r} does not occur in the answer {answer!r}.")
    start = answer.rindex(part)
    end = start + len(part)
    ids = answer_ids(model, answer).tolist()
    ends = [len(model.tokenizer.decode(ids[: j + 1])) for j in range(len(ids))]
    return tuple(n_prompt + j for j, e in enumerate(ends) if e > start and (j == 0 or ends[j - 1] < end))


def seeded_sample(items: Sequence[Any], n: int | None, seed: int, salt: str) -> list[Any]:
    """A seeded shuffle of ``items`` cut to ``n`` (all when None); the same (seed, salt) gives the same list."""
    order = list(items)
    random.Random(f"{salt}:{seed}").shuffle(order)
    if n is not None:
        if n < 0:
            raise ValueError(f"n must be >= 0 or None; got {n}.")
        order = order[:n]
    return order
