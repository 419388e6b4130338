"""Steered generation in one call.

:func:`generate` is the convenience path: mark a span, get the steered continuation as text. It is built only
from the public pieces (``emphasize`` + ``steer`` + the model's own KV-cached ``generate``), so anything it does
can be done by hand with hooks. Greedy decoding by default, so steered and unsteered outputs are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from jaxtyping import Int
from torch import Tensor

from pasta_lens.backends import generate_padding_kwargs
from pasta_lens.hf_engine import hf_engine_unavailable, hf_generate_tokens, hf_twin
from pasta_lens.plan import AlphaSpec, HeadSpec, ScalePosition, ScheduleSpec, resolve_plan
from pasta_lens.registry import default_profile
from pasta_lens.spans import Emphasis, emphasize
from pasta_lens.steering import steer

Engine = Literal["auto", "hooks", "hf"]
"""Which loop runs :func:`generate`: ``"hooks"`` (TransformerLens' ``generate`` with the steering hooks, on either
backend), ``"hf"`` (HF's ``generate`` on a plain twin of the bridge's weights: :mod:`pasta_lens.hf_engine`), or
``"auto"`` (``"hf"`` where it gives the same result, else ``"hooks"``)."""


def generate_new_tokens(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    max_new_tokens: int = 40,
    **generate_kwargs: Any,
) -> Int[Tensor, "batch new"]:
    """Greedy-generate after ``tokens`` (KV cache, left padding respected); return only the new tokens.

    The one place where the package calls ``model.generate``, on either backend: ``attention_mask`` (default: no
    padding) reaches the bridge as is and ``HookedTransformer`` as ``padding_side="left"``
    (:func:`pasta_lens.backends.generate_padding_kwargs`). Whatever hooks are active on the model (e.g. inside
    ``steer``) apply. Extra keyword arguments go to ``model.generate``.

    Example:
        >>> new = generate_new_tokens(model, model.to_tokens("The capital of France is"), max_new_tokens=5)
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(tokens)
    kwargs = dict(do_sample=False, use_past_kv_cache=True, verbose=False, stop_at_eos=True)
    kwargs.update(generate_kwargs)
    with torch.inference_mode():
        # The bridge takes attention_mask=; HookedTransformer infers it from left pad tokens (checked there).
        kwargs.update(generate_padding_kwargs(model, tokens, attention_mask))
        out = model.generate(tokens, prepend_bos=False, max_new_tokens=max_new_tokens, return_type="tokens", **kwargs)
    return out[:, tokens.shape[1] :]


def generate_tokens(
    model: Any, emphasis: Emphasis, max_new_tokens: int = 40, **generate_kwargs: Any
) -> Int[Tensor, "batch new"]:
    """Greedy-generate after ``emphasis.tokens`` (:func:`generate_new_tokens` with its attention mask)."""
    return generate_new_tokens(model, emphasis.tokens, emphasis.attention_mask, max_new_tokens, **generate_kwargs)


def method_tokens(
    model: Any,
    emphasis: Emphasis,
    method: str,
    heads: Any = "all",
    max_new_tokens: int = 40,
    *,
    params: Mapping[str, Any] | None = None,
    schedule: ScheduleSpec | None = None,
    allow_transfer: bool = False,
    alpha: AlphaSpec | None = None,
    scale_position: ScalePosition = "exclude",
    **generate_kwargs: Any,
) -> Int[Tensor, "batch new"]:
    """Greedy-generate after ``emphasis.tokens`` steered by a method of :mod:`pasta_lens.methods` (hooks engine).

    A two-pass method (SPA) generates from the doubled batch (prompt + anchor-free copy) and returns the first
    half. ``alpha`` / ``scale_position`` are PASTA's (an error for other methods). The hooks are removed afterwards,
    also on an exception.

    Example:
        >>> new = method_tokens(model, em, "instaboost", params={"factor": 5}, max_new_tokens=20)
    """
    from pasta_lens.methods.registry import steering_hooks  # the methods build on steering, which this imports

    info, hooks = steering_hooks(
        model,
        heads,
        emphasis,
        method,
        params,
        schedule=schedule,
        allow_transfer=allow_transfer,
        alpha=alpha,
        scale_position=scale_position,
    )
    tokens, mask = emphasis.tokens, emphasis.attention_mask
    if hooks:
        tokens, mask = info.batch(tokens), info.batch(mask)
    with model.hooks(fwd_hooks=hooks):
        new = generate_new_tokens(model, tokens, mask, max_new_tokens, **generate_kwargs)
    return new[: emphasis.tokens.shape[0]]


def decode_new(model: Any, new_tokens: Int[Tensor, "batch new"]) -> list[str]:
    """Decode generated tokens per row, dropping special tokens (EOS and the padding after it)."""
    return [model.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new_tokens.tolist()]


class EngineChoice(NamedTuple):
    """Which loop runs a generation (:func:`select_engine`); a tuple, so ``name, twin, why = ...`` unpacks it.

    Attributes:
        name: ``"hf"`` (HF's ``generate`` on the twin, :mod:`pasta_lens.hf_engine`) or ``"hooks"``
            (TransformerLens' ``generate`` with the steering hooks). Record it beside any output it made.
        twin: the twin (what :func:`pasta_lens.hf_engine.hf_twin` returned) when ``name == "hf"``, else None.
        why: in a phrase, why the hooks path runs (empty for ``"hf"``).
    """

    name: str
    twin: Any
    why: str


def select_engine(model: Any, engine: Engine = "auto", generate_kwargs: dict[str, Any] | None = None) -> EngineChoice:
    """Which loop :func:`generate` runs on ``model``: an :class:`EngineChoice` (``name``, ``twin``, ``why``).

    ``"auto"`` takes the twin only where it gives the hooked model's tokens (:func:`~pasta_lens.hf_engine.
    hf_engine_unavailable` and :func:`~pasta_lens.hf_engine.hf_twin` check every condition, ``docs/engines.md``
    lists them) and the model is fp32; anything it cannot vouch for runs on the hooks. Call it for every batch:
    a hook added between two calls changes the answer.

    Raises:
        ValueError: an unknown ``engine``, or ``engine="hf"`` where the twin cannot give the hooked model's result.

    Example:
        >>> select_engine(model).name                       # "hf" on a plain fp32 Llama-family bridge
        >>> select_engine(model, "hooks").why
        "engine='hooks' was asked for"
    """
    if engine not in ("auto", "hooks", "hf"):
        raise ValueError(f"engine must be 'auto', 'hooks' or 'hf'; got {engine!r}.")
    if engine == "hooks":
        return EngineChoice("hooks", None, "engine='hooks' was asked for")
    why = hf_engine_unavailable(model, generate_kwargs)
    dtypes = {p.dtype for p in model.parameters()}
    if why is None and engine == "auto" and dtypes != {torch.float32}:
        # In bf16 / fp16 the additive mask and the pattern edit round differently (near-ties can flip a token);
        # engine="hf" still runs there when asked for.
        why = f"auto takes the twin for fp32 models only; this one is {sorted(map(str, dtypes))}"
    if why is None:
        try:
            return EngineChoice("hf", hf_twin(model), "")
        except ValueError as err:  # a model the twin does not reproduce: the hooks path gives the result
            why = str(err)
    if engine == "hf":
        raise ValueError(
            f"engine='hf' cannot give the hooked model's result here: {why}. Use engine='auto' or engine='hooks'."
        )
    return EngineChoice("hooks", None, why)


def generate(
    model: Any,
    text: str | Sequence[str],
    heads: HeadSpec | None = None,
    *,
    alpha: AlphaSpec | None = None,
    chat: bool = False,
    markers: str | tuple[str, str] = "*",
    scale_position: ScalePosition = "exclude",
    max_new_tokens: int = 40,
    steered: bool = True,
    schedule: ScheduleSpec | None = None,
    engine: Engine = "auto",
    method: str = "pasta",
    method_params: Mapping[str, Any] | None = None,
    **generate_kwargs: Any,
) -> str | list[str]:
    """Generate a continuation of ``text`` with PASTA (or another method) steering towards its marked span(s).

    Args:
        model: a TransformerLens model (e.g. from :func:`pasta_lens.load_model`).
        text: prompt(s) with the emphasised span marked, e.g. ``"Maria is a nurse. *Answer in JSON.*"``.
        heads: the heads to steer (a head set, a ``HeadProfile`` or a :class:`~pasta_lens.plan.SteeringPlan`);
            default: the model's shipped default profile, else the interim set with a warning
            (:func:`pasta_lens.registry.default_profile`).
        alpha, scale_position: as in :func:`pasta_lens.pasta_hooks` (``alpha=None``: a profile's per-head
            alphas, else its ``alpha``, else 0.01).
        chat: render the model's chat template around the text.
        markers: the emphasis markers used in ``text``.
        max_new_tokens: how many tokens to generate at most (greedy unless ``do_sample=True`` is passed).
        steered: False gives the unsteered baseline on exactly the same tokens (markers removed).
        schedule: which rows are steered: ``"all"`` (every prompt and generated token, as the paper),
            ``"prompt"`` (the prefill only), ``"first:N"``, ``"decay:G"`` (see :mod:`pasta_lens.schedule`).
            None (default): the profile's recorded schedule when ``heads`` is one (or is the default profile),
            else ``"all"`` (the precedence of :mod:`pasta_lens.plan`).
        engine: ``"auto"`` (default) runs HF's own generation loop on a plain twin of the bridge's weights,
            steered by an additive mask (:mod:`pasta_lens.hf_engine`; faster on SmolLM2, same tokens), whenever
            the twin provably computes what the bridge computes (:mod:`pasta_lens.twin`: a default-mode fp32
            ``TransformerBridge``, greedy decoding, no hook of any kind, stock modules, every tensor matched);
            otherwise (your hooks, a patched module, a ``HookedTransformer``, bf16, sampling, GPT-2...)
            TransformerLens' ``generate`` with the steering hooks. ``"hooks"`` always takes the hooks path;
            ``"hf"`` insists on the twin and raises where it cannot (:func:`select_engine`). ``stop_at_eos=False``
            (a keyword passed on) means the same on both: EOS may be generated and generation goes on.
        method: a method of :mod:`pasta_lens.methods` by name or spec string (``"instaboost"``,
            ``"guide:delta=2"``, ``"spa"``, ...; default ``"pasta"``). Other methods, a spec with options and
            ``heads="all"`` run on the hooks engine; other methods steer ``heads`` (default ``"all"``, their papers');
            ``alpha`` and ``scale_position`` are PASTA's.
        method_params: the method's parameters (e.g. ``{"factor": 5}``; SEKA / PRISM-Delta need
            ``{"projections": ...}`` from :func:`pasta_lens.methods.fit`).

    Returns:
        The generated text (new tokens only): a string for one prompt, a list for several.

    Example:
        >>> generate(model, "Maria is a nurse. *Answer in JSON.*", heads={20: [0, 3]}, chat=True)
        >>> generate(model, "Maria is a nurse. *Answer in JSON.*", chat=True, method="instaboost:factor=5")
    """
    if method != "pasta" or method_params or isinstance(heads, str):
        from pasta_lens.methods.registry import resolve

        if engine == "hf":
            raise ValueError(
                "engine='hf' runs PASTA given by heads= and alpha= only; a method spec, method_params or "
                "heads='all' generate with engine='hooks' (or 'auto')."
            )
        if heads is None:
            heads = default_profile(model)[0] if resolve(method, method_params)[0].name == "pasta" else "all"
        em = emphasize(model, text, chat=chat, markers=markers)
        new = (
            method_tokens(
                model,
                em,
                method,
                heads,
                max_new_tokens,
                params=method_params,
                schedule=schedule,
                alpha=alpha,
                scale_position=scale_position,
                **generate_kwargs,
            )
            if steered
            else generate_tokens(model, em, max_new_tokens, **generate_kwargs)
        )
        texts = decode_new(model, new)
        return texts[0] if isinstance(text, str) else texts
    plan = None
    if steered:  # resolved once: what steer(model, plan, em) and the twin both carry out
        plan = resolve_plan(
            model, default_profile(model)[0] if heads is None else heads, alpha, schedule, scale_position
        )
    twin = select_engine(model, engine, generate_kwargs).twin
    em = emphasize(model, text, chat=chat, markers=markers)
    if twin is not None:
        new = hf_generate_tokens(
            model,
            em,
            plan,
            max_new_tokens=max_new_tokens,
            stop_at_eos=generate_kwargs.get("stop_at_eos", True),
            twin=twin,
        )
    elif plan is None:
        new = generate_tokens(model, em, max_new_tokens, **generate_kwargs)
    else:
        with steer(model, plan, em):
            new = generate_tokens(model, em, max_new_tokens, **generate_kwargs)
    texts = decode_new(model, new)
    return texts[0] if isinstance(text, str) else texts
