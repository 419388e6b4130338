"""A model's identity: a behavioural fingerprint (what it computes, not how its weights are stored) and a weights hash.

A head profile belongs to one set of weights. Hashing the weights (:func:`weights_hash`) tells apart two
checkpoints, but it also tells apart one checkpoint loaded in bf16 and in fp32, or as a ``TransformerBridge`` and
as a ``HookedTransformer`` with ``fold_ln`` / ``center_writing_weights`` (TransformerLens rewrites the weights),
although all of these compute the same function. The fingerprint compares behaviour:

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

The probe runs with every hook of a user's taken off the model (:func:`pasta_lens.model_hooks.hooks_disabled`)
and put back afterwards: identity is a property of the weights, so an ablation, a patch or an SAE hooked on the
model never changes which profile belongs to it. :func:`identity_mismatch` is the one check a profile makes
against a model (:meth:`pasta_lens.HeadProfile.validate_for`, :func:`pasta_lens.registry.find_profile`);
:func:`same_weights` compares two profiles without a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from pasta_lens.model_hooks import hooks_disabled

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


def probe_logprobs(model: Any, probe: Sequence[int]) -> Float[Tensor, " pos"]:
    """``log p(probe[t+1] | probe[:t+1])`` for each ``t``, in fp32 on the CPU: one forward pass of the weights alone
    (a user's hooks are taken off for it and put back: :func:`pasta_lens.model_hooks.hooks_disabled`)."""
    tokens = torch.tensor([list(probe)], dtype=torch.long, device=model.cfg.device)
    with torch.inference_mode(), hooks_disabled(model):
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
            raise ValueError(
                f"A fingerprint needs a probe of at least 2 tokens and one log-prob per next token "
                f"({len(self.probe)} tokens, {len(self.logprobs)} log-probs); recompute it with "
                "ModelFingerprint.of(model)."
            )

    @classmethod
    def of(cls, model: Any, length: int = PROBE_LENGTH) -> ModelFingerprint:
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
    def from_dict(cls, d: Mapping[str, Any]) -> ModelFingerprint:
        extra = set(d) - {"probe", "logprobs", "dtype"}
        if extra:
            raise ValueError(
                f"Unknown fingerprint fields {sorted(extra)}; a fingerprint has probe, logprobs and dtype."
            )
        return cls(tuple(d["probe"]), tuple(d["logprobs"]), str(d.get("dtype", "float32")))


# ------------------------------------------------------------------------------------------- weights hash
def weights_hash(model: Any, n_samples: int = 64) -> str:
    """A cheap fingerprint of a model's weights: SHA-256 of every parameter's shape and a strided sample of values.

    About ``n_samples`` values are read from each parameter tensor (evenly strided over its flattened values, in
    fp32), so hashing costs milliseconds even for large models, yet any fine-tune that moves the weights changes
    it. It is stable across loads of the same checkpoint on the same dtype; a different dtype gives another hash.

    Example:
        >>> weights_hash(model)[:12]
        '3f9c0a1b2c4d'
    """
    h = hashlib.sha256()
    with torch.no_grad():
        for param in model.parameters():
            flat = param.detach().reshape(-1)
            stride = max(1, flat.numel() // n_samples)
            sample = flat[::stride][:n_samples].to(device="cpu", dtype=torch.float32).contiguous()
            h.update(repr(tuple(param.shape)).encode())
            h.update(sample.numpy().tobytes())
    return "sha256:" + h.hexdigest()[:32]


# ------------------------------------------------------------------------------------- a profile vs a model
def identity_mismatch(profile: Any, model: Any, cache: dict[str, Any] | None = None) -> str | None:
    """None if ``model`` has the weights ``profile`` was made on, else a sentence saying what differs.

    ``profile`` is anything with ``fingerprint`` and ``weights_hash`` attributes (a
    :class:`~pasta_lens.HeadProfile`). With a fingerprint (schema 2): the model's probe log-probs must lie within
    the fingerprint's tolerance (:func:`tolerance`: 0.01 between fp32 models, 0.5 when bf16/fp16 is involved) of
    the recorded ones, whatever the model's backend, TransformerLens weight processing or hooks. Without one
    (schema-1 files): the exact :func:`weights_hash`. Without either: nothing to check (None). ``cache`` (a dict
    kept by the caller) saves recomputing the model's side across several profiles.

    Example:
        >>> identity_mismatch(load_profile("smollm2-135m-instruct"), model) is None    # True on SmolLM2
    """
    cache = {} if cache is None else cache
    fingerprint = getattr(profile, "fingerprint", None)
    if fingerprint is not None:
        key = "fingerprint:" + ",".join(map(str, fingerprint.probe))
        if key not in cache:
            cache[key] = fingerprint.distance(model)
        atol = fingerprint.tolerance_for(model)
        if cache[key] <= atol:
            return None
        return (
            f"its probe log-probs differ by up to {cache[key]:.3g}, more than the {atol} that separates one "
            f"model's backends and processing{'' if atol < FINGERPRINT_ATOL else ' and dtypes'} from other "
            "weights"
        )
    recorded = getattr(profile, "weights_hash", None)
    if recorded is None:
        return None
    if "hash" not in cache:
        cache["hash"] = weights_hash(model)
    if cache["hash"] == recorded:
        return None
    return (
        f"weights hash {recorded}, this model {cache['hash']}; this profile predates fingerprints, so only the "
        "exact weights in the profiled dtype match: re-stamp it with scripts/fingerprint.py"
    )


def same_weights(a: Any, b: Any) -> bool | None:
    """Whether two profiles were made on the same weights: their fingerprints agree within the dtype tolerance,
    else their weights hashes are equal; None when neither can tell (imported profiles).

    Example:
        >>> same_weights(load_profile("smollm2-135m-instruct"), load_profile("smollm2-135m-instruct-metric"))
        True
    """
    fa, fb = a.fingerprint, b.fingerprint
    if fa is not None and fb is not None and fa.probe == fb.probe:
        gap = max(abs(x - y) for x, y in zip(fa.logprobs, fb.logprobs))
        return gap <= tolerance(fa.dtype, fb.dtype)
    if a.weights_hash is not None and b.weights_hash is not None:
        return a.weights_hash == b.weights_hash
    return None
