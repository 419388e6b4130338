"""Fitting the key projections of SEKA and PRISM-Delta from the model's own keys, through the TransformerLens cache.

For each layer and key/value head, with ``H``, ``H+``, ``H-`` the ``[N, d]`` stacks of the answer tokens' keys in the
neutral, relevant and irrelevant texts of every :class:`~pasta_lens.methods.triplets.ContrastTriplet`
(``N`` tokens in all), read at the hook point where the method edits them (``hook_k``, or ``hook_k_normed`` after a
key norm; both before RoPE, as the authors' ``k_proj`` / ``k_norm`` outputs):

    Omega+ = H^T H+ / N,   Omega- = H^T H- / N,   norm_diff = ||H+ - H-||_F / N
    SEKA:        P+ = U+[:, :k+] U+[:, :k+]^T  (Omega+ = U+ S+ V+^T),   P- = U-[:, k-:] U-[:, k-:]^T
    PRISM-Delta: P_delta = U[:, :k] U[:, :k]^T  (Omega+ - Omega- = U S V^T)

with ``k`` the smallest number of singular values whose normalised cumulative sum reaches ``top_pct``
(``k = #{i : cumsum(S)_i / sum(S) < top_pct} + 1``), and every projection of a head with ``norm_diff < min_diff``
set to zero (the head is not steered). The sums are accumulated in float64 over batches, so memory does not grow
with the number of triplets; the SVD runs in float32 as in the authors' builders. ``values=True`` (PRISM-Delta only)
fits the same construction on ``hook_v`` (PRISM-Delta-V).

Keys are read with ``model.run_with_cache(..., names_filter=...)`` on right-padded batches of texts (causal
attention: trailing padding changes no earlier position), tokenised without special tokens, as the authors do.
A triplet whose answer spans a different number of tokens in the three texts is skipped (the cross-covariance pairs
token ``i`` of ``H`` with token ``i`` of ``H+``); the artefact records how many were used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from pasta_lens.fingerprint import ModelFingerprint
from pasta_lens.methods.common import n_kv_heads
from pasta_lens.methods.projections import KeyProjections, as_bshd, detect_layout
from pasta_lens.methods.triplets import TEXT_FORMATS, ContrastTriplet, synthetic_triplets

DEFAULTS = {"seka": {"top_pct": 0.90, "min_diff": 0.20}, "prism_delta": {"top_pct": 0.998, "min_diff": 0.08}}
"""The authors' recommended settings (SEKA README: ``--top_pct 0.90 --min_diff 0.20``; PRISM-DELTA README:
gamma 0.998, delta_min 0.08 for Qwen3)."""


def key_point(model: Any) -> str:
    """Where keys are read and edited: ``hook_k_normed`` when the model has a key norm and a hook after it (bridge),
    ``hook_k`` when it has no key norm.

    Raises:
        ValueError: a key norm but no hook after it (a ``HookedTransformer`` of Qwen3 / Gemma 3): the authors edit
            the normed key, and editing it before the norm is another method.
    """
    points = getattr(model, "hook_dict", {})
    if "blocks.0.attn.hook_k_normed" in points:
        return "hook_k_normed"
    if getattr(model.cfg, "use_qk_norm", False):
        raise ValueError(
            "This model normalises its keys (use_qk_norm) but has no hook after the norm: the key "
            "edits of SEKA / PRISM-Delta act on the normed key before RoPE. Load it as a "
            "TransformerBridge (load_model(..., backend='bridge')), which has hook_k_normed."
        )
    return "hook_k"


def answer_positions(tokenizer: Any, text: str, answer: str) -> list[int]:
    """Token indices (no special tokens) inside the first case-insensitive occurrence of ``answer``.

    As the authors' ``span_token_indices`` (PRISM-DELTA's version): tokens whose offsets lie inside the answer;
    if none does, allow one character more on the left (a byte-level token's offsets include its leading space, so
    a one-token answer " nurse" starts one character early), then one more on the right.
    """
    start = text.lower().find(answer.lower())
    if start < 0:
        return []
    end = start + len(answer)
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    for lo, hi in ((start, end), (start - 1, end), (start, end + 1)):
        found = [i for i, (s, e) in enumerate(offsets) if s >= lo and e <= hi]
        if found:
            return found
    return []


def _statistics(
    model: Any, triplets: Sequence[ContrastTriplet], layers: Sequence[int], points: dict[str, str], batch_size: int
) -> tuple[dict[str, dict[str, Tensor]], int, int, dict[str, str]]:
    """Per point kind: float64 sums ``cross_pos``, ``cross_neg`` [L, H, d, d], ``sq_diff`` [L, H]; N (answer tokens),
    the triplets used, and each point's activation layout."""
    tok = model.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    n_kv, d = n_kv_heads(model), int(model.cfg.d_head)
    sums = {
        kind: {
            "cross_pos": torch.zeros(len(layers), n_kv, d, d, dtype=torch.float64),
            "cross_neg": torch.zeros(len(layers), n_kv, d, d, dtype=torch.float64),
            "sq_diff": torch.zeros(len(layers), n_kv, dtype=torch.float64),
        }
        for kind in points
    }
    jobs = []  # (ids of the three texts, answer positions of the three)
    for t in triplets:
        texts = t.texts()
        pos = [answer_positions(tok, text, t.answer) for text in texts]
        if not all(pos) or len({len(p) for p in pos}) != 1:
            continue
        jobs.append(([tok(text, add_special_tokens=False)["input_ids"] for text in texts], pos))
    names = {
        f"blocks.{layer}.attn.{point}": (kind, i) for kind, point in points.items() for i, layer in enumerate(layers)
    }
    layouts: dict[str, str] = {}
    n_tokens = 0
    device = getattr(model.cfg, "device", None) or "cpu"
    for b in range(0, len(jobs), batch_size):
        chunk = jobs[b : b + batch_size]
        rows = [ids for ids_3, _ in chunk for ids in ids_3]
        tokens = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
        for r, ids in enumerate(rows):
            tokens[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        with torch.inference_mode():
            _, cache = model.run_with_cache(tokens.to(device), names_filter=lambda name: name in names)
        for name, (kind, i) in names.items():
            layout = detect_layout(tuple(cache[name].shape), tokens.shape[1], n_kv, d)
            if layouts.setdefault(kind, layout) != layout:
                raise ValueError(f"{name} changes layout across layers ({layouts[kind]} vs {layout}).")
            act = as_bshd(cache[name], layout, n_kv, d).to("cpu", torch.float64)  # [rows, pos, H, d]
            for j, (_, pos) in enumerate(chunk):
                h, hp, hn = (act[3 * j + r, pos[r]] for r in range(3))  # [n, H, d] each
                sums[kind]["cross_pos"][i] += torch.einsum("nhd,nhe->hde", h, hp)
                sums[kind]["cross_neg"][i] += torch.einsum("nhd,nhe->hde", h, hn)
                sums[kind]["sq_diff"][i] += ((hp - hn) ** 2).sum(dim=(0, 2))
        n_tokens += sum(len(pos[0]) for _, pos in chunk)
    if not jobs:
        raise ValueError(
            "No triplet could be used: the answer must tokenise to the same number of tokens in the "
            "three texts of a triplet (check that each answer occurs in its context)."
        )
    return sums, n_tokens, len(jobs), layouts


def subspace(omega: Tensor, top_pct: float, complement: bool = False) -> Tensor:
    """``U[:, :k] U[:, :k]^T`` (or the complement ``U[:, k:] U[:, k:]^T``) per head, for a batch ``[..., d, d]``."""
    u, s, _ = torch.linalg.svd(omega.float(), full_matrices=False)
    k = ((s.cumsum(-1) / s.sum(-1, keepdim=True)) < top_pct).sum(-1, keepdim=True) + 1  # [..., 1]
    cols = torch.arange(s.shape[-1])
    keep = (cols >= k) if complement else (cols < k)  # [..., d]
    return (u * keep[..., None, :]) @ u.transpose(-1, -2)


def fit_projections(
    model: Any,
    method: str,
    triplets: Sequence[ContrastTriplet] | None = None,
    *,
    n: int = 200,
    seed: int = 0,
    top_pct: float | None = None,
    min_diff: float | None = None,
    values: bool = False,
    layers: str | Sequence[int] = "all",
    batch_size: int = 8,
    command: str | None = None,
) -> KeyProjections:
    """Fit SEKA's (``method="seka"``) or PRISM-Delta's (``"prism_delta"``) projections on ``model``.

    Args:
        model: a TransformerLens model (bridge or HookedTransformer; key-normed models need the bridge).
        triplets: contrastive triplets; default :func:`~pasta_lens.methods.triplets.synthetic_triplets` ``(n, seed)``.
        top_pct: the singular-value mass kept (SEKA 0.90, PRISM-Delta 0.998 by default).
        min_diff: heads whose ``||H+ - H-||_F / N`` is below it are not steered (SEKA 0.20, PRISM-Delta 0.08).
        values: also fit value projections (PRISM-Delta-V).
        layers: ``"all"`` or the layers to fit.
        command: the command line to record (scripts pass theirs).

    Example:
        >>> proj = fit_projections(model, "prism_delta", n=200)
        >>> proj.save("runs/prism-smollm2.safetensors")
    """
    if method not in DEFAULTS:
        raise ValueError(f"Only {sorted(DEFAULTS)} are fitted; got {method!r}.")
    if values and method != "prism_delta":
        raise ValueError("values=True fits PRISM-Delta-V's value projections; SEKA edits keys only.")
    top_pct = DEFAULTS[method]["top_pct"] if top_pct is None else float(top_pct)
    min_diff = DEFAULTS[method]["min_diff"] if min_diff is None else float(min_diff)
    if not 0.0 < top_pct <= 1.0 or min_diff < 0:
        raise ValueError(f"top_pct must be in (0, 1] and min_diff >= 0; got top_pct={top_pct}, min_diff={min_diff}.")
    n_layers = int(model.cfg.n_layers)
    layers = list(range(n_layers)) if layers == "all" else sorted({int(x) for x in layers})
    if not layers or layers[0] < 0 or layers[-1] >= n_layers:
        raise ValueError(f"layers must be 'all' or layers of 0..{n_layers - 1}; got {layers}.")
    data = "synthetic_triplets" if triplets is None else "given"
    triplets = synthetic_triplets(n, seed) if triplets is None else list(triplets)
    points = {"key": key_point(model)}
    if values:
        points["value"] = "hook_v"
    start = time.perf_counter()
    sums, n_tokens, used, layouts = _statistics(model, triplets, layers, points, batch_size)
    tensors: dict[str, Tensor] = {}
    for kind, s in sums.items():
        prefix = "" if kind == "key" else "value_"
        norm_diff = (s["sq_diff"].sqrt() / n_tokens).float()
        keep = (norm_diff >= min_diff)[..., None, None]
        if method == "seka":
            tensors["pos"] = subspace(s["cross_pos"] / n_tokens, top_pct) * keep
            tensors["neg"] = subspace(s["cross_neg"] / n_tokens, top_pct, complement=True) * keep
        else:
            tensors[prefix + "diff"] = subspace((s["cross_pos"] - s["cross_neg"]) / n_tokens, top_pct) * keep
        tensors[prefix + "norm_diffs"] = norm_diff
    settings = {
        "top_pct": top_pct,
        "min_diff": min_diff,
        "n_triplets": used,
        "n_triplets_given": len(triplets),
        "n_tokens": n_tokens,
        "seed": seed,
        "data": data,
        "text_formats": dict(TEXT_FORMATS),
        "fit_seconds": round(time.perf_counter() - start, 2),
    }
    return KeyProjections(
        method=method,
        model_name=str(getattr(model.cfg, "model_name", "") or type(model).__name__),
        n_layers=n_layers,
        n_heads=int(model.cfg.n_heads),
        n_kv_heads=n_kv_heads(model),
        d_head=int(model.cfg.d_head),
        key_point=points["key"],
        layers=tuple(layers),
        tensors=tensors,
        settings=settings,
        fingerprint=ModelFingerprint.of(model),
        command=command,
        layouts=layouts,
    )
