"""What a task hands the profiler: one example = tokens, the emphasis key mask, and a scalar objective.

The profiler scores a head by how much steering it alone raises a task's *objective*, a differentiable function
of the logits (higher = better). The usual one is the log-probability of the target answer under teacher
forcing: the prompt is followed by the target tokens, and

    objective = sum_t log p(target_t | prompt, target_<t)          (positions n_prompt-1 .. n_prompt+n_target-2)

optionally minus the same for a contrast answer's first token (CounterFact: log P(new) - log P(old)).
:func:`target_logprob` returns a :class:`KeyedObjective`, whose ``key`` names exactly what it computes, so a
resumed profiling run can tell a changed objective from the same one (other objectives are fingerprinted by their
values on fixed random logits, see :mod:`pasta_lens.profiling.checkpoints`).

The key mask covers only the prompt: the target tokens play the part of generated tokens, whose keys PASTA
never rescales. Objectives map logits ``[batch, pos, vocab]`` to one value per row ``[batch]`` so that the
profiler can put several steered copies of an example in one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

Objective = Callable[[Float[Tensor, "batch pos vocab"]], Float[Tensor, " batch"]]


class KeyedObjective:
    """An objective with a ``key`` naming exactly what it computes: two objectives with the same key give the same
    value on the same logits, so a resumed profiling run (:mod:`pasta_lens.profiling.checkpoints`) may reuse the
    rows it finished; an objective without one is fingerprinted by its values instead.

    Example:
        >>> objective = target_logprob(12, torch.tensor([5, 9]))
        >>> objective.key
        'target_logprob:v1:12:[5, 9]:None'
    """

    def __init__(self, fn: Objective, key: str) -> None:
        self.fn = fn
        self.key = key

    def __call__(self, logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, " batch"]:
        return self.fn(logits)


@dataclass(frozen=True)
class ProfilingExample:
    """One profiling example.

    Attributes:
        tokens: the prompt followed by any teacher-forced target tokens, ``[1, pos]``.
        key_mask: emphasis over the prompt positions, ``[1, n_prompt]`` (``n_prompt <= pos``).
        objective: logits ``[batch, pos, vocab]`` -> ``[batch]``, differentiable, higher is better.
        attention_mask: ``[1, pos]`` or None (no padding).
        task: name of the task the example comes from.
        close: index in ``tokens`` of the token that closes the answer when the target goes on to end the turn
            (a chat task's target with ``end_turn``: the answer's last token, right before the end-of-turn marker;
            for the JSON task, ``"}``), else None. Learned strengths can weight it (``close_weight``).
        focus: indices in ``tokens`` of the target tokens that carry the answer's content, a subset of the
            target positions (the biography instruction tasks: the tokens spelling the occupation at its last
            mention in the gold answer), else None. Learned strengths can weight them (``focus_weight``).
    """

    tokens: Int[Tensor, "1 pos"]
    key_mask: Bool[Tensor, "1 prompt"]
    objective: Objective
    attention_mask: Int[Tensor, "1 pos"] | None = None
    task: str = ""
    close: int | None = None
    focus: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.tokens.ndim != 2 or self.tokens.shape[0] != 1:
            raise ValueError(f"ProfilingExample.tokens must be [1, pos]; got {tuple(self.tokens.shape)}.")
        if self.key_mask.ndim != 2 or self.key_mask.shape[0] != 1 or self.key_mask.dtype != torch.bool:
            raise ValueError("ProfilingExample.key_mask must be a bool tensor [1, n_prompt].")
        if self.key_mask.shape[1] > self.tokens.shape[1]:
            raise ValueError("ProfilingExample.key_mask is longer than tokens; it covers the prompt only.")
        if not bool(self.key_mask.any()):
            raise ValueError("ProfilingExample has an empty emphasis: the key mask marks no token.")
        if not callable(self.objective):
            raise ValueError("ProfilingExample.objective must be callable: logits [batch, pos, vocab] -> [batch].")
        if self.close is not None and not (self.key_mask.shape[1] <= self.close < self.tokens.shape[1]):
            raise ValueError(
                f"ProfilingExample.close = {self.close} is not a target position (the target holds "
                f"positions {self.key_mask.shape[1]}..{self.tokens.shape[1] - 1})."
            )
        if self.focus is not None:
            low, high = int(self.key_mask.shape[1]), int(self.tokens.shape[1])
            if not self.focus or any(not low <= int(i) < high for i in self.focus):
                raise ValueError(
                    f"ProfilingExample.focus = {self.focus} must name one or more target positions "
                    f"(the target holds positions {low}..{high - 1}), or be None."
                )

    @property
    def n_prompt(self) -> int:
        return int(self.key_mask.shape[1])


def target_logprob(
    n_prompt: int,
    target_ids: Int[Tensor, " n_target"],
    contrast_ids: Int[Tensor, " n_contrast"] | None = None,
) -> KeyedObjective:
    """Objective: summed log-prob of ``target_ids`` placed right after the prompt (teacher forcing).

    With ``contrast_ids``, subtract the log-prob of the contrast's *first* token at the answer position
    (it is not in the sequence, so only its first token is scored): ``log P(new) - log P(old)``.
    """
    target_ids = target_ids.flatten()
    n = int(target_ids.shape[0])
    if n == 0:
        raise ValueError("target_logprob needs at least one target token.")

    def objective(logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, " batch"]:
        logp = torch.log_softmax(logits[:, n_prompt - 1 : n_prompt - 1 + n].float(), dim=-1)
        idx = target_ids.to(logits.device)[None, :, None].expand(logits.shape[0], n, 1)
        score = logp.gather(-1, idx).squeeze(-1).sum(-1)
        if contrast_ids is not None:
            score = score - logp[:, 0, int(contrast_ids.flatten()[0])]
        return score

    first_contrast = None if contrast_ids is None else int(contrast_ids.flatten()[0])
    return KeyedObjective(objective, f"target_logprob:v1:{int(n_prompt)}:{target_ids.tolist()}:{first_contrast}")
