"""The architecture table: what pasta_lens does on each family, checked from outside, one cell per check.

Every check takes a model (any TransformerLens model: a tiny family model of :mod:`tests.families`, or a real one)
and returns an :class:`Outcome`: ``pass``, ``refused`` (a clear error, or an engine that is correctly not used,
with the reason) or ``fail`` (a wrong result, or an error that does not say what is wrong). The checks:

``steer``        a steered forward (left-padded batch, one prompt longer than the sliding window) equals an
                 independent reference, the official code's additive log(alpha) on ``hook_attn_scores``
                 (``tests/reference.py``), and changes the logits.
``generate``     KV-cached greedy generation through the hooks (``steer`` + the model's own ``generate``) gives the
                 tokens of an uncached reference loop (a full forward per step with the reference hooks), on a
                 prompt longer than the window, steering every head of layers 0 and 1; the reference's tokens
                 must differ from unsteered ones.
``fast engine``  the same through the fast engine (``pasta_lens.hf_engine``) where it exists for the model.
``auto``         ``generate(engine="auto")`` gives the reference's text, and which loop ran is observed (not
                 asked): the fast engine or the hooks, with the reason it was not used.
``attribution``  gradient attribution (one forward + backward through ``hook_pattern``) is finite, the top
                 head's exact score has its sign, and every head's estimate is within 10% (of the largest exact
                 score) of the exact change at alpha = 0.9, where the first-order estimate must be close.
``guard``        :func:`pasta_lens.hook_check.check_steerable` accepts the model where edits work, and on a copy
                 whose ``hook_pattern`` of one layer fires but is discarded (as TransformerLens' bridge did before
                 its PR #1740) or never fires, it refuses naming that layer; ``steer`` refuses a model without the
                 hook point. On a model whose edits really are discarded: refused, and steering is verified to
                 be a no-op.

``python scripts/architectures_table.py`` writes the table of the running world into ``docs/architectures.md``;
``tests/test_architectures.py`` asserts every cell and that the page shows what the checks give.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional
from unittest import mock

import torch

PROMPTS = ["the cat sat on the mat and looked around. *look at this part now.* then it ran away fast",
           "a *short* one"]
"""The first prompt (~58 tokens on the tiny tokenizer) is longer than the tiny sliding window (8)."""
HEADS = [(0, 1), (1, 2)]
"""Heads of the forward check: one in each of the first two layers (a local and a global layer on Gemma)."""
GEN_HEADS = [(layer, head) for layer in (0, 1) for head in range(4)]
"""Heads of the generation checks: every head of the first two layers, so that steering changes the tokens."""
ALPHA = 0.01
N_NEW = 8
FORWARD_TOL = 2e-6
"""Steered logits vs the additive reference (fp32; measured <= 5e-7 on the tiny families)."""
ATTR_ALPHA, ATTR_TOL = 0.9, 0.1

Status = Literal["pass", "refused", "fail"]
CHECKS = ("steer", "generate", "fast engine", "auto", "attribution", "guard")


@dataclass(frozen=True)
class Outcome:
    """One cell: ``status`` and a short ``detail`` (the reason for ``refused`` / ``fail``, or what ran)."""

    status: Status
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status not in ("pass", "refused", "fail"):
            raise ValueError(f"Outcome.status must be 'pass', 'refused' or 'fail'; got {self.status!r}.")

    def cell(self) -> str:
        label = {"pass": "pass", "refused": "refused", "fail": "**FAIL**"}[self.status]
        return f"{label}: {self.detail}" if self.detail else label


def _short(err: BaseException, limit: int = 90) -> str:
    text = re.sub(r"\s+", " ", str(err)).strip()
    return f"{type(err).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def names_the_window(text: str) -> bool:
    """A refusal of a sliding-window layer must say that the window is the reason."""
    return "window" in text.lower()


# ------------------------------------------------------------------------------------------------- references
def reference_forward(model: Any, em: Any) -> torch.Tensor:
    from tests.reference import additive_reference_hooks

    with torch.inference_mode():
        return model.run_with_hooks(em.tokens, attention_mask=em.attention_mask,
                                    fwd_hooks=additive_reference_hooks(HEADS, em.key_mask, ALPHA))


def reference_tokens(model: Any, em: Any, steered: bool = True) -> list[int]:
    """Greedy tokens after ``em`` (one row) by an uncached loop: a full forward of the whole sequence per step,
    steered on :data:`GEN_HEADS` by the additive reference."""
    from tests.reference import additive_reference_hooks

    hooks = additive_reference_hooks(GEN_HEADS, em.key_mask, ALPHA) if steered else []
    tokens, new = em.tokens, []
    with torch.inference_mode():
        for _ in range(N_NEW):
            logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            new.append(int(nxt))
            tokens = torch.cat([tokens, nxt], dim=1)
    return new


@functools.lru_cache(maxsize=None)
def _emphasis(model: Any, batch: bool) -> Any:
    from pasta_lens import emphasize

    return emphasize(model, PROMPTS if batch else PROMPTS[0])


def _steerable(model: Any) -> Optional[str]:
    from pasta_lens.hook_check import check_steerable

    try:
        check_steerable(model)
    except ValueError as err:
        return str(err)
    return None


def _refusal(model: Any) -> Optional[Outcome]:
    """``refused`` where the guard refuses the model (verified: steering there really does nothing)."""
    why = _steerable(model)
    if why is None:
        return None
    from pasta_lens import pasta_hooks

    em = _emphasis(model, False)
    with torch.inference_mode():
        steered = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks(HEADS, em, ALPHA))
        plain = model(em.tokens)
    if not torch.equal(steered, plain):
        return Outcome("fail", "the guard refuses a model that steering does change")
    return Outcome("refused", "edits discarded; use backend='hooked'")


# ------------------------------------------------------------------------------------------------- the checks
def check_steer(model: Any) -> Outcome:
    from pasta_lens import pasta_hooks

    refused = _refusal(model)
    if refused:
        return refused
    em = _emphasis(model, True)
    with torch.inference_mode():
        ours = model.run_with_hooks(em.tokens, attention_mask=em.attention_mask,
                                    fwd_hooks=pasta_hooks(HEADS, em, ALPHA, model=model))
        plain = model(em.tokens, attention_mask=em.attention_mask)
    ref = reference_forward(model, em)
    real = em.attention_mask.bool()
    diff, effect = float((ours - ref).abs()[real].max()), float((ours - plain).abs()[real].max())
    if not diff <= FORWARD_TOL:
        return Outcome("fail", f"steered logits differ from the additive reference by {diff:.1e}")
    if not effect > 1e-2:
        return Outcome("fail", f"steering changes the logits by only {effect:.1e}")
    return Outcome("pass")  # no number in the cell: the page must not depend on the last bit of a CPU's arithmetic


def _steered_reference(model: Any, em: Any) -> Optional[list[int]]:
    """The reference's steered tokens, or None when they equal the unsteered ones (a check on them proves nothing)."""
    ref = reference_tokens(model, em)
    return None if ref == reference_tokens(model, em, steered=False) else ref


NOT_STEERED = Outcome("fail", "steering does not change the reference tokens: the check would prove nothing")


def _generation(model: Any, run: Callable[[Any, Any], list[int]]) -> Outcome:
    refused = _refusal(model)
    if refused:
        return refused
    em = _emphasis(model, False)
    ref = _steered_reference(model, em)
    if ref is None:
        return NOT_STEERED
    try:
        got = run(model, em)
    except ValueError as err:
        if names_the_window(str(err)):
            return Outcome("refused", _short(err, 100))
        return Outcome("fail", _short(err))
    if got != ref:
        first = next(i for i, (a, b) in enumerate(zip(got, ref)) if a != b) if got[:len(ref)] != ref else len(ref)
        return Outcome("fail", f"tokens differ from the uncached reference from new token {first} on")
    return Outcome("pass")


def _hooks_loop(model: Any, em: Any) -> list[int]:
    from pasta_lens import steer
    from pasta_lens.generation import generate_tokens

    with steer(model, GEN_HEADS, em, ALPHA):
        return generate_tokens(model, em, N_NEW, stop_at_eos=False)[0].tolist()


def _fast_loop(model: Any, em: Any) -> list[int]:
    from pasta_lens.hf_engine import hf_generate_tokens
    from pasta_lens.plan import resolve_plan

    return hf_generate_tokens(model, em, resolve_plan(model, GEN_HEADS, ALPHA), max_new_tokens=N_NEW,
                              stop_at_eos=False)[0].tolist()


def fast_engine_refusal(model: Any) -> Optional[str]:
    """Why the fast engine is not used for ``model`` (a short phrase), or None when it is."""
    from pasta_lens.generation import select_engine

    name, _, why = select_engine(model, "auto")
    if name == "hf":
        return None
    if "renames" in why:
        return "the bridge renames the modules"
    if "not a TransformerBridge" in why:
        return "not a TransformerBridge"
    return why[:100]


def check_generate(model: Any) -> Outcome:
    return _generation(model, _hooks_loop)


def check_fast_engine(model: Any) -> Outcome:
    why = fast_engine_refusal(model)
    if why is not None:
        return Outcome("refused", f"not used ({why})")
    return _generation(model, _fast_loop)


def check_auto(model: Any) -> Outcome:
    """``generate(engine="auto")``: the reference's text, and which loop really ran (observed by wrapping both)."""
    from pasta_lens import generation

    refused = _refusal(model)
    if refused:
        return refused
    em = _emphasis(model, False)
    ref = _steered_reference(model, em)
    if ref is None:
        return NOT_STEERED
    expected = generation.decode_new(model, torch.tensor([ref]))[0]
    ran = []
    fast, hooks = generation.hf_generate_tokens, generation.generate_tokens
    with mock.patch.object(generation, "hf_generate_tokens", side_effect=lambda *a, **k: ran.append("fast engine")
                           or fast(*a, **k)), \
            mock.patch.object(generation, "generate_tokens", side_effect=lambda *a, **k: ran.append("hooks")
                              or hooks(*a, **k)):
        try:
            text = generation.generate(model, PROMPTS[0], GEN_HEADS, alpha=ALPHA, max_new_tokens=N_NEW,
                                       stop_at_eos=False)
        except ValueError as err:
            if names_the_window(str(err)):
                return Outcome("refused", _short(err, 100))
            return Outcome("fail", _short(err))
    if len(ran) != 1:
        return Outcome("fail", f"loops run: {ran}")
    why = fast_engine_refusal(model)
    loop = ran[0] if ran[0] == "fast engine" else f"hooks ({why})"
    if (ran[0] == "fast engine") != (why is None):
        return Outcome("fail", f"select_engine says {'hooks' if why else 'fast engine'} but {ran[0]} ran")
    if text != expected:
        return Outcome("fail", f"{loop}: text differs from the uncached reference")
    return Outcome("pass", loop)


def check_attribution(model: Any) -> Outcome:
    from pasta_lens import profile_heads
    from pasta_lens.objectives import ProfilingExample, target_logprob
    from pasta_lens.profiling.scoring import exact_scores

    em = _emphasis(model, False)
    target = torch.tensor(reference_tokens(model, em, steered=False)[:2])
    n_prompt = em.tokens.shape[1]
    ex = ProfilingExample(torch.cat([em.tokens, target[None].to(em.tokens.device)], 1), em.key_mask,
                          target_logprob(n_prompt, target), task="architecture")
    try:
        attr = profile_heads(model, [ex], method="attribution", alpha=ATTR_ALPHA, progress=False).scores.flatten()
    except ValueError as err:
        if _steerable(model) is not None:  # the guard refuses this model; attribution says why in its own words
            return Outcome("refused", "edits discarded: no gradient (profile_heads says so)")
        return Outcome("fail", _short(err))
    heads = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    exact = exact_scores(model, ex, ATTR_ALPHA, heads)[1]
    if not bool(torch.isfinite(attr).all()):
        return Outcome("fail", "non-finite attribution scores")
    scale = float(exact.abs().max())
    top = int(attr.abs().argmax())
    err = float((attr - exact).abs().max())
    if not scale > 0 or math.copysign(1, float(attr[top])) != math.copysign(1, float(exact[top])):
        return Outcome("fail", f"top head's attribution {float(attr[top]):.2e} vs exact {float(exact[top]):.2e}")
    if not err <= ATTR_TOL * scale:
        return Outcome("fail", f"attribution off the exact change by {err / scale:.0%} of the largest")
    return Outcome("pass")


class DiscardingHookPoint:
    """Mixed into a hook point's class: its hooks fire on a copy and their result is dropped (PR #1740's bug)."""

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        super().__call__(x.clone(), *args, **kwargs)  # type: ignore[misc]
        return x


def discard_edits(model: Any, layer: int) -> None:
    """Make ``model``'s ``hook_pattern`` of ``layer`` fire but discard what its hooks return (changes ``model``)."""
    point = model.hook_dict[f"blocks.{layer}.attn.hook_pattern"]
    point.__class__ = type("Discarding" + type(point).__name__, (DiscardingHookPoint, type(point)), {})


def never_fire(model: Any, layer: int) -> None:
    """Replace the module ``model.blocks[layer].attn.hook_pattern`` by a fresh hook point that ``model.hooks``
    never reaches (hooks go to the registered one, which no longer runs), as when attention skips the pattern."""
    from transformer_lens.hook_points import HookPoint

    attn = model.blocks[layer].attn
    registered = model.hook_dict[f"blocks.{layer}.attn.hook_pattern"]
    for name, child in list(attn.named_modules()):
        if child is registered:
            owner, _, leaf = name.rpartition(".")
            setattr(attn.get_submodule(owner) if owner else attn, leaf, HookPoint())


class WithoutPatternHook:
    """A model whose hook names lack one layer's ``hook_pattern`` (as gemma3n had before TL's PR #1673)."""

    def __init__(self, model: Any, layer: int):
        self.model, self.layer = model, layer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    @property
    def hook_dict(self) -> dict:
        return {k: v for k, v in self.model.hook_dict.items() if k != f"blocks.{self.layer}.attn.hook_pattern"}


def check_guard(model: Any, fresh: Callable[[], Any]) -> Outcome:
    """``fresh()`` builds a new copy of ``model`` (the broken copies are made from it)."""
    from pasta_lens import emphasize, steer
    from pasta_lens.hook_check import check_steerable

    refused = _refusal(model)
    if refused:
        return refused
    layer = 1
    for breaks, how in ((discard_edits, "edit discarded"), (never_fire, "hook never fires")):
        broken = fresh()
        breaks(broken, layer)
        try:
            check_steerable(broken)
        except ValueError as err:
            if f"blocks.{layer}.attn.hook_pattern" not in str(err) or "backend='hooked'" not in str(err):
                return Outcome("fail", f"{how}: refused without naming the layer and the fix: {_short(err)}")
        else:
            return Outcome("fail", f"{how}: check_steerable accepts a model whose layer {layer} ignores edits")
    em = emphasize(model, PROMPTS[0])
    try:
        with steer(WithoutPatternHook(model, layer), HEADS, em, ALPHA):
            pass
    except ValueError as err:
        if "no blocks.1.attn.hook_pattern" not in str(err) or "eager" not in str(err):
            return Outcome("fail", f"missing hook point: unclear error {_short(err)}")
    else:
        return Outcome("fail", "steer accepts a model without hook_pattern")
    return Outcome("pass")


# ------------------------------------------------------------------------------------------------- the table
def run_check(check: str, model: Any, fresh: Callable[[], Any]) -> Outcome:
    """One cell: ``check`` (one of :data:`CHECKS`) on ``model``; an unexpected exception is a ``fail``."""
    runs: dict[str, Callable[[], Outcome]] = {
        "steer": lambda: check_steer(model), "generate": lambda: check_generate(model),
        "fast engine": lambda: check_fast_engine(model), "auto": lambda: check_auto(model),
        "attribution": lambda: check_attribution(model), "guard": lambda: check_guard(model, fresh)}
    try:
        return runs[check]()
    except Exception as err:  # noqa: BLE001 - a crash is a cell of the table, with its message
        return Outcome("fail", _short(err))


@functools.lru_cache(maxsize=None)
def family_outcome(family: str, backend: str, check: str) -> Outcome:
    """The cell of a tiny family model (cached per process: the table and the tests share the runs)."""
    from tests.families import build_model, family_model

    return run_check(check, family_model(family, backend), lambda: build_model(family, backend))


def world() -> str:
    """The installed versions, as the table's heading states them."""
    from importlib.metadata import version

    return (f"TransformerLens {version('transformer-lens')}, transformers {version('transformers')}, "
            f"torch {torch.__version__.split('+')[0]}")


def section_key(backend: str) -> str:
    from importlib.metadata import version

    return f"tl{version('transformer-lens').split('.')[0]}-{backend}"


def table(backend: str, families: Optional[list[str]] = None) -> str:
    """The Markdown table of ``backend`` in the running world (runs every check not yet run in this process)."""
    from tests.families import FAMILIES

    names = families or list(FAMILIES)
    kind = {"bridge": "TransformerBridge", "hooked": "HookedTransformer"}[backend]
    lines = [f"**{kind}** ({world()})", "", "| family | " + " | ".join(CHECKS) + " |",
             "|---|" + "---|" * len(CHECKS)]
    for name in names:
        cells = [family_outcome(name, backend, check).cell() for check in CHECKS]
        lines.append(f"| {FAMILIES[name].label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
