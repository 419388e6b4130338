"""A behavioural fingerprint of a model: what it computes, not how its weights are stored.

A head profile belongs to one set of weights. Hashing the weights (:func:`pasta_lens.profile.weights_hash`) tells
apart two checkpoints, but it also tells apart one checkpoint loaded in bf16 and in fp32, or as a
``TransformerBridge`` and as a ``HookedTransformer`` with ``fold_ln`` / ``center_writing_weights`` (TransformerLens
rewrites the weights), although all of these compute the same function. The fingerprint compares behaviour:

    f(model)_t = log p_model(x_{t+1} | x_1..x_t),   t = 1 .. T-1

for a fixed probe sequence ``x`` of ``T`` token ids drawn from a seeded generator (no tokenizer involved, so it is
the same on every backend), computed in fp32 from the model's logits. Log-probs, not logits: TransformerLens'
``center_unembed`` shifts every logit of a position by the same amount, which log-softmax removes. Two models
match when ``max_t |f_a - f_b| <= atol``, with ``atol`` from :func:`tolerance`:

* both sides in fp32 (or fp64): ``0.01``. Measured on SmolLM2 (``results/head_selection.md``): bridge vs
  HookedTransformer, processed or not, differ by < 1e-4; the same weights with Gaussian noise of 0.1% of each
  tensor's std added differ by 0.059.
* either side in bf16 / fp16: ``0.5``. bf16 rounding is itself a weight perturbation: fp32 vs bf16 differ by 0.42
  (bridge or hooked; 0.39 processed), noise of 1% of the std by 0.61, 3% by 1.98. So in reduced precision the
  fingerprint accepts any change smaller than about 0.7% of the weights' std (it cannot tell such a change from
  rounding) and refuses larger ones; a fine-tune moves the weights far more than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

PROBE_LENGTH = 32
"""Tokens in the probe sequence (31 log-probs)."""

PROBE_SEED = 0

FULL_PRECISION_ATOL = 0.01
"""Largest max-abs log-prob difference accepted as "the same weights" when both models are fp32 (or fp64)."""

FINGERPRINT_ATOL = 0.5
"""The same when either model is in reduced precision (bf16 / fp16); also the loosest tolerance ever applied."""

_FULL_PRECISION = ("float32", "float64")


def model_dtype(model: Any) -> str:
    """The dtype of the model's parameters, as a name (``"float32"``, ``"bfloat16"``, ...)."""
    return str(next(iter(model.parameters())).dtype).replace("torch.", "")


def tolerance(dtype_a: str, dtype_b: str) -> float:
    """The fingerprint tolerance for two models of these parameter dtypes (see the module docstring)."""
    full = dtype_a in _FULL_PRECISION and dtype_b in _FULL_PRECISION
    return FULL_PRECISION_ATOL if full else FINGERPRINT_ATOL


def probe_tokens(d_vocab: int, length: int = PROBE_LENGTH, seed: int = PROBE_SEED) -> tuple[int, ...]:
    """The probe: ``length`` token ids in ``[0, d_vocab)`` from a seeded CPU generator (same on every machine)."""
    if d_vocab < 2:
        raise ValueError(f"d_vocab must be at least 2 to draw a probe; got {d_vocab}.")
    gen = torch.Generator().manual_seed(seed)
    return tuple(int(t) for t in torch.randint(0, d_vocab, (length,), generator=gen))


def probe_logprobs(model: Any, probe: Sequence[int]) -> Float[Tensor, "pos"]:
    """``log p(probe[t+1] | probe[:t+1])`` for each ``t``, in fp32 on the CPU (one forward pass, no hooks added)."""
    tokens = torch.tensor([list(probe)], dtype=torch.long, device=model.cfg.device)
    with torch.inference_mode():
        logits = model(tokens)
    logprobs = logits[0, :-1].float().log_softmax(-1)
    return logprobs.gather(-1, tokens[0, 1:, None].to(logprobs.device))[:, 0].cpu()


@dataclass(frozen=True)
class ModelFingerprint:
    """The probe token ids, the model's log-probs of each next probe token, and the dtype they were computed in.

    Example:
        >>> fp = ModelFingerprint.of(model)
        >>> fp.matches(other_model)       # True for the same weights in another dtype or backend
    """

    probe: tuple[int, ...]
    logprobs: tuple[float, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "probe", tuple(int(t) for t in self.probe))
        object.__setattr__(self, "logprobs", tuple(float(x) for x in self.logprobs))
        if len(self.probe) < 2 or len(self.logprobs) != len(self.probe) - 1:
            raise ValueError(f"A fingerprint needs a probe of at least 2 tokens and one log-prob per next token "
                             f"({len(self.probe)} tokens, {len(self.logprobs)} log-probs); recompute it with "
                             "ModelFingerprint.of(model).")

    @classmethod
    def of(cls, model: Any, length: int = PROBE_LENGTH) -> "ModelFingerprint":
        """The fingerprint of ``model`` on the standard probe for its vocabulary size."""
        probe = probe_tokens(int(model.cfg.d_vocab), length)
        return cls(probe, tuple(probe_logprobs(model, probe).tolist()), model_dtype(model))

    def distance(self, model: Any) -> float:
        """``max_t |log p_model - log p_recorded|`` over the recorded probe (inf if the probe does not fit)."""
        if max(self.probe) >= int(model.cfg.d_vocab):
            return float("inf")
        actual = probe_logprobs(model, self.probe)
        return float((actual - torch.tensor(self.logprobs)).abs().max())

    def tolerance_for(self, model: Any) -> float:
        """The ``atol`` that applies between this fingerprint and ``model`` (:func:`tolerance` of the dtypes)."""
        return tolerance(self.dtype, model_dtype(model))

    def matches(self, model: Any) -> bool:
        """True if ``model`` behaves like the fingerprinted one within :meth:`tolerance_for`."""
        return self.distance(model) <= self.tolerance_for(model)

    def to_dict(self) -> dict[str, Any]:
        return {"probe": list(self.probe), "logprobs": [round(x, 6) for x in self.logprobs], "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelFingerprint":
        extra = set(d) - {"probe", "logprobs", "dtype"}
        if extra:
            raise ValueError(f"Unknown fingerprint fields {sorted(extra)}; a fingerprint has probe, logprobs and "
                             "dtype.")
        return cls(tuple(d["probe"]), tuple(d["logprobs"]), str(d.get("dtype", "float32")))
