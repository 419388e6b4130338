"""When to steer: a per-query-position schedule for PASTA (beyond the paper).

The paper and its official code steer every query row, including the rows of generated tokens, so each new token
keeps being pulled towards the emphasised instruction. A :class:`Schedule` decides, for every query position,
how strongly its row is steered, as an *exponent* ``e`` on alpha:

    A'[q, k] = A[q, k] * w_q[k] / sum_j A[q, j] * w_q[j],   w_q[k] = alpha ** e(q)  on scaled prompt keys
                                                             w_q[k] = 1             otherwise

``e = 1`` is full PASTA, ``e = 0`` leaves the row untouched (bit-identical to the unsteered run), values in
between steer more gently (``alpha ** e`` lies between alpha and 1). Positions are absolute: the prompt (the
emphasis' tokens, padded) has ``n_prompt`` positions, and the row at position ``p >= n_prompt`` processes the
``t = p - n_prompt + 1``-th generated token (the row that *chooses* generated token ``t + 1``). The prompt's
last row, at ``p = n_prompt - 1``, chooses the first generated token. A hook sees only the pattern
``[batch, head, query, key]``; with ``K`` keys its query rows are positions ``K - Q .. K - 1``, with or without
the KV cache, so a schedule gives the same steering cached and uncached.

=============  =====================================================================================
``all``        every row, ``e = 1`` (the paper's, and the default)
``prompt``     prompt rows only (the prefill): the first generated token is still chosen by a steered
               prefill, no generated token's row is steered
``first:N``    the prompt and the rows of the first ``N`` generated tokens
``decay:G``    prompt rows ``e = 1``; generated token ``t``'s row ``e = G ** t`` (alpha ** (G ** t)),
               ``0 < G <= 1``; ``decay:1`` is ``all``
=============  =====================================================================================

Example:
    >>> Schedule.parse("first:4").exponents(torch.arange(8, 12), n_prompt=9)
    tensor([1., 1., 1., 1.])
    >>> Schedule.parse("decay:0.5").exponents(torch.arange(8, 11), n_prompt=9)
    tensor([1.0000, 0.5000, 0.2500])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

ScheduleKind = Literal["all", "prompt", "first", "decay"]
SCHEDULE_KINDS: tuple[str, ...] = ("all", "prompt", "first", "decay")
SCHEDULE_HELP = "all (every row, the paper's), prompt (prefill only), first:N (prompt + N new tokens), decay:G"


@dataclass(frozen=True)
class Schedule:
    """Which query rows PASTA steers, and how strongly (see the module docstring for the formula).

    Attributes:
        kind: ``"all"``, ``"prompt"``, ``"first"`` or ``"decay"``.
        n: for ``"first"``: how many generated tokens' rows are steered after the prompt (>= 0).
        gamma: for ``"decay"``: the exponent's factor per generated token, in (0, 1].

    Build one with :meth:`parse` (``Schedule.parse("first:4")``) or directly (``Schedule("first", n=4)``);
    ``str(schedule)`` gives the spec back.
    """

    kind: ScheduleKind = "all"
    n: int = 0
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"Unknown schedule kind {self.kind!r}; use one of: {SCHEDULE_HELP}.")
        if self.kind == "first" and (isinstance(self.n, bool) or int(self.n) != self.n or self.n < 0):
            raise ValueError(
                f"first:N needs a whole number N >= 0 of generated tokens; got {self.n!r}. "
                "Use e.g. first:4 (first:0 is the same as prompt)."
            )
        if self.kind != "first" and self.n != 0:
            raise ValueError(f"n only applies to first:N schedules; got n={self.n} with kind {self.kind!r}.")
        if self.kind == "decay" and not (0.0 < float(self.gamma) <= 1.0):
            raise ValueError(
                f"decay:G needs 0 < G <= 1 (the exponent on alpha shrinks by G per generated "
                f"token; decay:1 is all); got G={self.gamma!r}."
            )
        if self.kind != "decay" and self.gamma != 1.0:
            raise ValueError(
                f"gamma only applies to decay:G schedules; got gamma={self.gamma} with kind {self.kind!r}."
            )

    @classmethod
    def parse(cls, spec: str | Schedule | None) -> Schedule:
        """A schedule from ``"all"``, ``"prompt"``, ``"first:N"``, ``"decay:G"`` (or a Schedule / None = all).

        Raises:
            ValueError: an unknown kind or a bad number, with the accepted forms.

        Example:
            >>> Schedule.parse("decay:0.5")
            Schedule(kind='decay', n=0, gamma=0.5)
        """
        if spec is None:
            return cls()
        if isinstance(spec, Schedule):
            return spec
        if not isinstance(spec, str):
            raise ValueError(
                f"A schedule is a string such as 'prompt' or 'first:4', or a Schedule; got "
                f"{type(spec).__name__} {spec!r}."
            )
        kind, sep, value = spec.strip().lower().partition(":")
        bad = ValueError(f"Bad schedule {spec!r}; use one of: {SCHEDULE_HELP} (e.g. first:4, decay:0.5).")
        if kind == "all" and not sep:
            return cls("all")
        if kind == "prompt" and not sep:
            return cls("prompt")
        if kind not in ("first", "decay") or not sep:
            raise bad
        if kind == "first":
            try:
                count = int(value)
            except ValueError:
                raise bad from None
            return cls("first", n=count)
        try:
            gamma = float(value)
        except ValueError:
            raise bad from None
        return cls("decay", gamma=gamma)

    def __str__(self) -> str:
        if self.kind == "first":
            return f"first:{self.n}"
        if self.kind == "decay":
            return f"decay:{self.gamma:g}"
        return self.kind

    @property
    def is_all(self) -> bool:
        """True when every row is steered fully (the paper's behaviour): the hook's fast path."""
        return self.kind == "all" or (self.kind == "decay" and self.gamma == 1.0)

    def exponents(self, positions: Int[Tensor, " query"], n_prompt: int) -> Float[Tensor, " query"]:
        """The exponent ``e`` on alpha for each absolute query position (fp32; 1 = full, 0 = unsteered).

        Args:
            positions: absolute query positions (``K - Q .. K - 1`` for a pattern with ``K`` keys, ``Q`` rows).
            n_prompt: the number of prompt positions (``key_mask.shape[1]``).
        """
        t = (positions - n_prompt + 1).clamp_min(0)  # 0 on prompt rows, t on generated token t's row
        if self.is_all:
            return torch.ones(positions.shape, dtype=torch.float32, device=positions.device)
        if self.kind == "decay":
            return torch.pow(torch.tensor(float(self.gamma), dtype=torch.float32, device=positions.device), t.float())
        limit = 0 if self.kind == "prompt" else self.n
        return (t <= limit).float()


def query_positions(n_queries: int, n_keys: int, device: torch.device | None = None) -> Int[Tensor, " query"]:
    """Absolute positions of a pattern's query rows: ``K - Q .. K - 1`` (prefill: all; KV-cached decode: the last)."""
    return torch.arange(n_keys - n_queries, n_keys, device=device)


def scheduled_weights(
    weights: Float[Tensor, "batch head 1 key"],
    exponents: Float[Tensor, " query"],
) -> Float[Tensor, "batch head query key"]:
    """Per-row key weights ``w ** e(q)``: rows with ``e = 1`` keep ``w`` exactly, ``e = 0`` rows become all 1.

    Weight-1 keys (emphasised, generated) stay 1 for every exponent. For an additive variant on the scores the
    same schedule is ``e(q) * log(w)``.
    """
    e = exponents.to(weights.device)[None, None, :, None]
    return torch.where(e == 1.0, weights, torch.pow(weights, e))
