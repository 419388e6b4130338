"""Per-head scores of one task and what each number is: :class:`HeadScores`, and the ranking they imply.

A task's score table holds, for every head ``(l, h)``, the mean objective change when that head alone is steered
(:mod:`pasta_lens.profiling.scoring` computes it). Selection needs more than the table: a ``hybrid`` ranks by exact
scores only inside its re-scored block, so :meth:`HeadScores.ranking` (not a sort of ``scores``) is the order
every selection rule uses. A bare table ranks by :func:`ranking_by_score`: descending, ties to the lower
``(layer, head)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxtyping import Bool, Float, Int
from torch import Tensor

from pasta_lens.plan import Head

Method = Literal["attribution", "exact", "hybrid"]
METHODS = ("attribution", "exact", "hybrid")


@dataclass(frozen=True)
class HeadScores:
    """Per-head scores of one task, with what each number is: which estimator, over how many examples.

    For ``hybrid`` the two estimators are never ranked against each other. The ranking is the attribution
    ranking over all ``n_examples``, with its first ``top_m`` places (the re-scored block) re-ordered by the exact
    scores, which are all means over the *same* first ``n_exact`` examples, so they are comparable among
    themselves. A top-k set with ``k <= top_m`` is therefore chosen by exact scores (from the attribution
    shortlist); beyond ``top_m`` it is chosen by attribution (:func:`~pasta_lens.profiling.make_profile` refuses
    that unless asked, and then labels it).

    Attributes:
        scores: each head's mean objective change when it alone is steered, by that head's estimator (exact
            where ``exact``, else attribution), ``[n_layers, n_heads]``. Use :meth:`ranking`, not a sort of this
            table, to rank a hybrid (the two estimators are on slightly different scales).
        method: ``"attribution"``, ``"exact"`` or ``"hybrid"``.
        alpha: steering strength used.
        n_examples: examples profiled (attribution: all of them; exact: all of them).
        task: task name (from the examples).
        std: per-example standard deviation of the change, by the same estimator and examples as ``scores``.
        exact: True where ``scores`` is exact (all heads for ``exact``, the re-scored block for ``hybrid``).
        baseline: mean unsteered objective over the examples.
        per_example: the change per example for every head by the run's first estimator, ``[n_examples, n_layers,
            n_heads]``: attribution values for ``attribution`` and ``hybrid``, exact values for ``exact``.
        exact_per_example: ``hybrid`` only: the exact change on each of the first ``n_exact`` examples,
            ``[n_exact, n_layers, n_heads]``, NaN at heads that were not re-scored.
        counts: examples behind each head's score, ``[n_layers, n_heads]`` (``n_exact`` or ``n_examples``).
        order: the ranking, best first (empty: sort ``scores``); set for ``hybrid``.
        top_m: ``hybrid`` only: the size of the re-scored block.
        n_exact: examples of the exact scores (0 for ``attribution``).
        wall_time_s: compute time of this task, summed over every resumed segment of a checkpointed run.
    """

    scores: Float[Tensor, "layer head"]
    method: str
    alpha: float
    n_examples: int
    task: str = ""
    std: Float[Tensor, "layer head"] | None = None
    exact: Bool[Tensor, "layer head"] | None = None
    baseline: float = float("nan")
    per_example: Float[Tensor, "example layer head"] | None = None
    exact_per_example: Float[Tensor, "n_exact layer head"] | None = None
    counts: Int[Tensor, "layer head"] | None = None
    order: tuple[Head, ...] = ()
    top_m: int | None = None
    n_exact: int = 0
    wall_time_s: float = float("nan")

    def __post_init__(self) -> None:
        if not isinstance(self.scores, Tensor) or self.scores.ndim != 2:
            raise ValueError("HeadScores.scores must be a [n_layers, n_heads] tensor.")
        for name in ("std", "exact", "counts"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != tuple(self.scores.shape):
                raise ValueError(f"HeadScores.{name} must have the shape of scores {tuple(self.scores.shape)}.")
        if self.method not in METHODS:
            raise ValueError(f"HeadScores.method must be one of {METHODS}; got {self.method!r}.")
        if self.n_examples < 1:
            raise ValueError("HeadScores.n_examples must be at least 1.")
        order = tuple((int(h[0]), int(h[1])) for h in self.order)
        total = self.scores.numel()
        if order and (len(order) != total or len(set(order)) != total):
            raise ValueError(f"HeadScores.order must rank every head once ({total} heads); got {len(order)}.")
        object.__setattr__(self, "order", order)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.scores.shape[0]), int(self.scores.shape[1])

    def ranking(self) -> tuple[Head, ...]:
        """All heads, best first (``order`` when set, else by score; ties: lower layer, then lower head first)."""
        return self.order or ranking_by_score(self.scores)

    def top(self, k: int) -> tuple[Head, ...]:
        """The ``k`` best heads, best first."""
        check_k(k, self.shape)
        return self.ranking()[:k]

    def exact_through(self) -> int:
        """How many places at the top of :meth:`ranking` are ordered by exact scores (all for ``exact``)."""
        if self.method == "exact":
            return self.scores.numel()
        return int(self.top_m or 0) if self.method == "hybrid" else 0

    def describe(self) -> str:
        """One line saying exactly what was computed, e.g. for a profile's ``method`` field."""
        total = self.scores.numel()
        if self.method == "attribution":
            return f"attribution (all {total} heads, {self.n_examples} examples)"
        if self.method == "exact":
            return f"exact (all {total} heads, {self.n_examples} examples)"
        return (
            f"hybrid (attribution ranking of all {total} heads on {self.n_examples} examples; its top "
            f"{self.top_m} re-ordered by exact scores on the first {self.n_exact} examples)"
        )


def ranking_by_score(scores: Float[Tensor, "layer head"]) -> tuple[Head, ...]:
    """Every head of a score table, best first; ties: the lower ``(layer, head)`` first (a stable order).

    Example:
        >>> ranking_by_score(torch.tensor([[0.1, 0.3], [0.3, -1.0]]))
        ((0, 1), (1, 0), (0, 0), (1, 1))
    """
    n_layers, n_heads = scores.shape
    flat = scores.reshape(-1).tolist()
    order = sorted(range(len(flat)), key=lambda i: (-flat[i], i))  # stable: ties -> lower (layer, head)
    return tuple((i // n_heads, i % n_heads) for i in order)


def check_k(k: int, shape: tuple[int, int]) -> None:
    """Raise ``ValueError`` unless ``k`` is an integer in ``1 .. n_layers * n_heads`` (``shape``)."""
    total = shape[0] * shape[1]
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= total:
        raise ValueError(
            f"k must be an integer between 1 and the number of heads ({shape[0]} layers x "
            f"{shape[1]} heads = {total}); got {k!r}."
        )
