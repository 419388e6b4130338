"""The one registry of steering methods: names, parameters and defaults, and the one way to get any method's hooks.

Every method is a hook factory ``factory(model, emphasis, heads="all", **params) -> [(hook_name, hook_fn), ...]``
with the inputs of :func:`pasta_lens.pasta_hooks` (an :class:`~pasta_lens.spans.Emphasis`, a head set or
``"all"``, its own strengths). :func:`hooks` looks a method up by name (or by a spec string such as
``"instaboost:factor=5"``, the form the evaluation harness and the CLI pass around), checks its parameters and
calls the factory; :func:`run` runs one steered forward pass, doubling the batch for SPA.

=============  ===========================================  ====================================  ===========
name           acts on                                      parameters (defaults)                 fitted
=============  ===========================================  ====================================  ===========
pasta          hook_pattern (or hook_attn_scores)           alpha (0.01), scale_position,         no
                                                            schedule, where
instaboost     hook_pattern                                 factor (5), schedule                  no
guide          hook_attn_scores                             delta (1), schedule ("prompt")        no
spotlight      hook_pattern                                 target (0.2), granularity, schedule   no
seka           hook_k / hook_k_normed (before RoPE)         projections, gain_pos (0.8),          yes
                                                            gain_neg (0.2)
prism_delta    hook_k / hook_k_normed (+ hook_v)            projections, gain (0.4), gain_v (0)   yes
spa            hook_embed, hook_attn_scores, unembed        strength (1.4), modulated (True)      no (2 passes)
=============  ===========================================  ====================================  ===========
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from pasta_lens.kernels import HookFn
from pasta_lens.methods import guide, instaboost, key_edit, spa, spotlight
from pasta_lens.methods.common import HeadsArg, all_heads
from pasta_lens.plan import ScalePosition, Where
from pasta_lens.spans import Emphasis
from pasta_lens.steering import pasta_hooks


def _pasta(
    model: Any,
    emphasis: Any,
    heads: HeadsArg = "all",
    *,
    alpha: float | None = None,
    scale_position: ScalePosition = "exclude",
    schedule: Any = None,
    where: Where = "pattern",
    allow_transfer: bool = False,
) -> list[tuple[str, HookFn]]:
    """PASTA through :func:`pasta_lens.pasta_hooks` (``heads="all"``: every head; a profile keeps its alphas and
    schedule)."""
    spec = all_heads(model) if isinstance(heads, str) and heads == "all" else heads
    return pasta_hooks(
        spec,
        emphasis,
        alpha,
        scale_position,
        model=model,
        allow_transfer=allow_transfer,
        schedule=schedule,
        where=where,
    )


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


@dataclass(frozen=True)
class MethodInfo:
    """One registered method.

    Attributes:
        name: the registry name.
        paper: the paper it implements.
        code: the authors' code it is checked against (repository, file), or "" when none is public.
        acts_on: the TransformerLens hook points it edits.
        factory: ``factory(model, emphasis, heads, **params) -> fwd_hooks``.
        params: each tunable parameter's parser from a spec string (``"factor=5"``) and its default.
        passes: forward passes per step (SPA: 2, as one doubled batch).
        fitted: whether it needs an artefact from :func:`pasta_lens.methods.fit`.
    """

    name: str
    paper: str
    code: str
    acts_on: str
    factory: Callable[..., list[tuple[str, HookFn]]]
    params: Mapping[str, tuple[Callable[[str], Any], Any]] = field(default_factory=dict)
    passes: int = 1
    fitted: bool = False

    @property
    def defaults(self) -> dict[str, Any]:
        """``{parameter: default}``."""
        return {k: default for k, (_, default) in self.params.items()}

    def batch(self, x: Tensor) -> Tensor:
        """The batch this method's hooks run on: ``x`` itself, or for a two-pass method (SPA) ``x`` stacked on
        itself (:func:`pasta_lens.methods.spa.spa_batch`; the caller keeps the first ``len(x)`` rows)."""
        return spa.spa_batch(x) if self.passes == 2 else x


SCHEDULE = (str, None)
METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo(
            "pasta",
            "Zhang et al., ICLR 2024",
            "QingruZhang/PASTA pastalib/pasta.py",
            "hook_pattern",
            _pasta,
            {
                "alpha": (_optional_float, None),
                "scale_position": (str, "exclude"),
                "schedule": SCHEDULE,
                "where": (str, "pattern"),
            },
        ),
        MethodInfo(
            "instaboost",
            "Guardieiro et al., 2025 (arXiv 2506.13734)",
            "BrachioLab/InstABoost src/model_interaction_utils.py",
            "hook_pattern",
            instaboost.instaboost_hooks,
            {"factor": (float, instaboost.DEFAULT_FACTOR), "schedule": SCHEDULE},
        ),
        MethodInfo(
            "guide",
            "Silva et al., 2024, Pay Attention to What Matters (arXiv 2409.19001)",
            "netop-team/pay_attention_experiment src/attention_saver.py",
            "hook_attn_scores",
            guide.guide_hooks,
            {"delta": (float, guide.DEFAULT_DELTA), "schedule": (str, guide.DEFAULT_SCHEDULE)},
        ),
        MethodInfo(
            "spotlight",
            "Venkateswaran & Contractor, 2025 (arXiv 2505.12025)",
            "IBM agent-lifecycle-toolkit altk/pre_llm/spotlight/spotlight.py",
            "hook_pattern",
            spotlight.spotlight_hooks,
            {"target": (float, spotlight.DEFAULT_TARGET), "granularity": (str, "sample"), "schedule": SCHEDULE},
        ),
        MethodInfo(
            "seka",
            "Li et al., ICLR 2026, Spectral Attention Steering for Prompt Highlighting",
            "waylonli/SEKA src/model/seka_llm.py (and its copy in YuyaoGe/PRISM-DELTA)",
            "hook_k / hook_k_normed (before RoPE)",
            key_edit.seka_hooks,
            {
                "projections": (str, None),
                "gain_pos": (float, key_edit.SEKA_GAINS[0]),
                "gain_neg": (_optional_float, key_edit.SEKA_GAINS[1]),
                "schedule": SCHEDULE,
            },
            fitted=True,
        ),
        MethodInfo(
            "prism_delta",
            "Ge et al., COLM 2026 (arXiv 2603.10705)",
            "YuyaoGe/PRISM-DELTA src/model/prism_llm.py",
            "hook_k / hook_k_normed (before RoPE), optionally hook_v",
            key_edit.prism_delta_hooks,
            {
                "projections": (str, None),
                "gain": (float, key_edit.PRISM_GAIN),
                "gain_v": (float, key_edit.PRISM_VALUE_GAIN),
                "schedule": SCHEDULE,
            },
            fitted=True,
        ),
        MethodInfo(
            "spa",
            "Tian & Zhang, ICML 2025, Selective Prompt Anchoring (arXiv 2408.09121)",
            "magic-YuanTian/Selective-Prompt-Anchoring spa.py",
            "hook_embed, hook_attn_scores, unembed.hook_out",
            spa.spa_hooks,
            {"strength": (float, spa.DEFAULT_STRENGTH), "modulated": (_bool, True), "schedule": SCHEDULE},
            passes=2,
        ),
    )
}


def available() -> tuple[str, ...]:
    """The registered method names, in the order of the registry.

    Example:
        >>> available()
        ('pasta', 'instaboost', 'guide', 'spotlight', 'seka', 'prism_delta', 'spa')
    """
    return tuple(METHODS)


def get(name: str) -> MethodInfo:
    """The :class:`MethodInfo` of ``name`` (``ValueError`` listing the names otherwise)."""
    if name not in METHODS:
        raise ValueError(f"Unknown steering method {name!r}; available: {', '.join(METHODS)}.")
    return METHODS[name]


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value,key=value"`` -> ``(name, params)``, each value parsed by its parameter's type.

    Example:
        >>> parse_spec("instaboost:factor=5,schedule=prompt")
        ('instaboost', {'factor': 5.0, 'schedule': 'prompt'})
    """
    name, _, opts = spec.strip().partition(":")
    info = get(name)
    params: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in opts.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in info.params:
            raise ValueError(
                f"Bad option {item!r} in {spec!r}: {name} takes "
                f"{', '.join(f'{k}=' for k in info.params) or 'no options'}."
            )
        try:
            params[key] = info.params[key][0](value)
        except ValueError as err:
            raise ValueError(f"Bad value in {item!r} of {spec!r}: {err}.") from None
    return name, params


def resolve(method: str, params: Mapping[str, Any] | None = None) -> tuple[MethodInfo, dict[str, Any]]:
    """The method and its parameters from a name or spec string plus explicit ``params`` (which may not repeat
    the spec's)."""
    name, from_spec = parse_spec(method)
    info = get(name)
    given = dict(params or {})
    both = set(from_spec) & set(given)
    if both:
        raise ValueError(f"{sorted(both)} given both in the spec {method!r} and as parameters; give each once.")
    merged = {**from_spec, **given}
    unknown = set(merged) - set(info.params)
    if unknown:
        raise ValueError(f"{name} has no parameter {sorted(unknown)}; it takes {', '.join(info.params)}.")
    return info, merged


def hooks(
    name: str,
    model: Any,
    emphasis: Emphasis | Tensor,
    heads: HeadsArg = "all",
    *,
    allow_transfer: bool = False,
    **params: Any,
) -> list[tuple[str, HookFn]]:
    """TransformerLens ``fwd_hooks`` that steer ``model`` towards the emphasis with the method ``name``.

    Args:
        name: a name from :func:`available` or a spec string (``"instaboost:factor=5"``).
        model: the model the hooks are for (heads and fitted artefacts are checked against it).
        emphasis: an :class:`~pasta_lens.spans.Emphasis` or a bool key mask ``[batch, prompt]``.
        heads: ``"all"`` or a head set / profile.
        **params: the method's parameters (:attr:`MethodInfo.params`), e.g. InstABoost's ``factor``.

    Raises:
        ValueError: an unknown method or parameter, a bad value, or an artefact fitted on another model.

    Example:
        >>> em = emphasize(model, "Maria is a nurse. *Answer in JSON.*", chat=True)
        >>> logits = model.run_with_hooks(em.tokens, fwd_hooks=hooks("instaboost", model, em, factor=5))
    """
    info, merged = resolve(name, params)
    return info.factory(model, emphasis, heads, allow_transfer=allow_transfer, **merged)


def batch_for(name: str, x: Tensor) -> Tensor:
    """The batch the method ``name`` (or spec string) runs on: ``x`` (tokens or attention mask), doubled for SPA.

    Run the model on it inside the method's hooks and keep the first ``len(x)`` rows of the output.

    Example:
        >>> with model.hooks(fwd_hooks=hooks("spa", model, em)):
        ...     logits = model(batch_for("spa", em.tokens))[: len(em.tokens)]
    """
    return get(parse_spec(name)[0]).batch(x)


def run(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    emphasis: Emphasis | Tensor,
    name: str = "pasta",
    heads: HeadsArg = "all",
    *,
    attention_mask: Tensor | None = None,
    allow_transfer: bool = False,
    **params: Any,
) -> Float[Tensor, "batch pos vocab"]:
    """One steered forward pass: the logits of ``tokens`` (the emphasis' tokens or a continuation) under ``name``.

    For a two-pass method (SPA) the batch is doubled (:func:`pasta_lens.methods.spa.spa_batch`) and the first half
    returned. Hooks are removed afterwards, also on an exception.

    Example:
        >>> logits = run(model, em.tokens, em, "spa", strength=1.4)
    """
    info, merged = resolve(name, params)
    fwd = info.factory(model, emphasis, heads, allow_transfer=allow_transfer, **merged)
    batch = tokens.shape[0]
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
    if fwd:
        tokens = info.batch(tokens)
        if attention_mask is not None:
            kwargs["attention_mask"] = info.batch(attention_mask)
    with torch.inference_mode(), model.hooks(fwd_hooks=fwd):
        logits = model(tokens, **kwargs)
    return logits[:batch]


PASTA_ARGUMENTS = {"alpha": None, "scale_position": "exclude", "where": "pattern"}
"""The arguments :func:`pasta_lens.steer` and :func:`pasta_lens.generate` take for PASTA, with their defaults."""


def steering_hooks(
    model: Any,
    heads: HeadsArg,
    emphasis: Emphasis | Tensor,
    method: str = "pasta",
    params: Mapping[str, Any] | None = None,
    *,
    schedule: Any = None,
    allow_transfer: bool = False,
    **pasta_arguments: Any,
) -> tuple[MethodInfo, list[tuple[str, HookFn]]]:
    """The hooks of ``steer(..., method=...)`` / ``generate(..., method=...)``: the method (name or spec string),
    its ``params``, the ``schedule`` and, for PASTA only, ``alpha`` / ``scale_position`` / ``where`` (each given
    once: in the spec, in ``params`` or as an argument).

    Example:
        >>> info, fwd = steering_hooks(model, "all", em, "instaboost:factor=5")
    """
    info, merged = resolve(method, params)
    given = {k: v for k, v in pasta_arguments.items() if v != PASTA_ARGUMENTS.get(k, object())}
    unknown = set(pasta_arguments) - set(PASTA_ARGUMENTS)
    if unknown:
        raise ValueError(f"Unknown steering arguments {sorted(unknown)}.")
    if given and info.name != "pasta":
        raise ValueError(
            f"{', '.join(sorted(given))} {'is' if len(given) == 1 else 'are'} PASTA's; {info.name} takes "
            f"{', '.join(info.params)}: pass them as method_params={{...}} or in the spec "
            f"('{info.name}:{next(iter(info.params))}=...')."
        )
    if schedule is not None:
        given["schedule"] = schedule
    both = set(given) & set(merged)
    if both:
        raise ValueError(f"{sorted(both)} given both as an argument and in the method's parameters; give each once.")
    return info, info.factory(model, emphasis, heads, allow_transfer=allow_transfer, **{**merged, **given})
