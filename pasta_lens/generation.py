"""Steered generation in one call.

:func:`generate` is the convenience path: mark a span, get the steered continuation as text. It is built only
from the public pieces (``emphasize`` + ``steer`` + the model's own KV-cached ``generate``), so anything it does
can be done by hand with hooks. Greedy decoding by default, so steered and unsteered outputs are comparable.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Sequence, Union

import torch
from jaxtyping import Int
from torch import Tensor

from pasta_lens.backends import generate_padding_kwargs
from pasta_lens.hf_engine import hf_engine_unavailable, hf_generate_tokens, hf_twin
from pasta_lens.spans import Emphasis, emphasize
from pasta_lens.plan import AlphaSpec, HeadSpec, ScalePosition, ScheduleSpec, resolve_plan
from pasta_lens.registry import default_profile
from pasta_lens.steering import steer

Engine = Literal["auto", "hooks", "hf"]
"""Which loop runs :func:`generate`: ``"hooks"`` (TransformerLens' ``generate`` with the steering hooks, on either
backend), ``"hf"`` (HF's ``generate`` on a plain twin of the bridge's weights: :mod:`pasta_lens.hf_engine`), or
``"auto"`` (``"hf"`` where it gives the same result, else ``"hooks"``)."""


def generate_new_tokens(model: Any, tokens: Int[Tensor, "batch pos"],
                        attention_mask: Optional[Int[Tensor, "batch pos"]] = None, max_new_tokens: int = 40,
                        **generate_kwargs: Any) -> Int[Tensor, "batch new"]:
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
        out = model.generate(tokens, prepend_bos=False, max_new_tokens=max_new_tokens, return_type="tokens",
                             **kwargs)
    return out[:, tokens.shape[1]:]


def generate_tokens(model: Any, emphasis: Emphasis, max_new_tokens: int = 40,
                    **generate_kwargs: Any) -> Int[Tensor, "batch new"]:
    """Greedy-generate after ``emphasis.tokens`` (:func:`generate_new_tokens` with its attention mask)."""
    return generate_new_tokens(model, emphasis.tokens, emphasis.attention_mask, max_new_tokens, **generate_kwargs)


def decode_new(model: Any, new_tokens: Int[Tensor, "batch new"]) -> list[str]:
    """Decode generated tokens per row, dropping special tokens (EOS and the padding after it)."""
    return [model.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new_tokens.tolist()]


def select_engine(model: Any, engine: Engine = "auto", generate_kwargs: Optional[dict[str, Any]] = None
                  ) -> tuple[str, Any, str]:
    """Which loop :func:`generate` runs: ``(name, twin, why)`` with ``name`` ``"hf"`` or ``"hooks"``.

    ``twin`` is the HF twin (:func:`pasta_lens.hf_engine.hf_twin`) when ``name == "hf"``, else None; ``why`` says in
    a phrase why the hooks path runs (empty for ``"hf"``).

    Raises:
        ValueError: an unknown ``engine``, or ``engine="hf"`` where the twin cannot give the hooked model's result.
    """
    if engine not in ("auto", "hooks", "hf"):
        raise ValueError(f"engine must be 'auto', 'hooks' or 'hf'; got {engine!r}.")
    if engine == "hooks":
        return "hooks", None, "engine='hooks' was asked for"
    why = hf_engine_unavailable(model, generate_kwargs)
    dtypes = {p.dtype for p in model.parameters()}
    if why is None and engine == "auto" and dtypes != {torch.float32}:
        # In bf16 / fp16 the additive mask and the pattern edit round differently (near-ties can flip a token);
        # engine="hf" still runs there when asked for.
        why = f"auto takes the twin for fp32 models only; this one is {sorted(map(str, dtypes))}"
    if why is None:
        try:
            return "hf", hf_twin(model), ""
        except ValueError as err:  # an architecture the twin does not cover: the hooks path gives the result
            why = str(err)
    if engine == "hf":
        raise ValueError(f"engine='hf' cannot give the hooked model's result here: {why}. Use engine='auto' or "
                         "engine='hooks'.")
    return "hooks", None, why


def generate(
    model: Any,
    text: Union[str, Sequence[str]],
    heads: Union[HeadSpec, None] = None,
    *,
    alpha: Optional[AlphaSpec] = None,
    chat: bool = False,
    markers: Union[str, tuple[str, str]] = "*",
    scale_position: ScalePosition = "exclude",
    max_new_tokens: int = 40,
    steered: bool = True,
    schedule: Optional[ScheduleSpec] = None,
    engine: Engine = "auto",
    **generate_kwargs: Any,
) -> Union[str, list[str]]:
    """Generate a continuation of ``text`` with PASTA steering towards its marked span(s).

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
            that gives the bridge's result: a default-mode ``TransformerBridge`` that keeps HF's module names
            (Llama-family models), fp32, greedy decoding and no hook of yours on the model; otherwise (your hooks,
            a ``HookedTransformer``, bf16, sampling, GPT-2...) TransformerLens' ``generate`` with the steering hooks.
            ``"hooks"`` always takes the hooks path; ``"hf"`` insists on the twin and raises where it cannot
            (:func:`select_engine`).

    Returns:
        The generated text (new tokens only): a string for one prompt, a list for several.

    Example:
        >>> generate(model, "Maria is a nurse. *Answer in JSON.*", heads={20: [0, 3]}, chat=True)
    """
    plan = None
    if steered:  # resolved once: what steer(model, plan, em) and the twin both carry out
        plan = resolve_plan(model, default_profile(model)[0] if heads is None else heads, alpha, schedule,
                            scale_position)
    twin = select_engine(model, engine, generate_kwargs)[1]
    em = emphasize(model, text, chat=chat, markers=markers)
    if twin is not None:
        new = hf_generate_tokens(model, em, plan, max_new_tokens=max_new_tokens,
                                 stop_at_eos=generate_kwargs.get("stop_at_eos", True), twin=twin)
    elif plan is None:
        new = generate_tokens(model, em, max_new_tokens, **generate_kwargs)
    else:
        with steer(model, plan, em):
            new = generate_tokens(model, em, max_new_tokens, **generate_kwargs)
    texts = decode_new(model, new)
    return texts[0] if isinstance(text, str) else texts
