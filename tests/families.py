"""Tiny random models of the architecture families pasta_lens is tested on, built from their transformers configs (no downloads).

``family_hf_model("gemma3")`` is a 2- or 3-layer model of that family with the tiny tokenizer of
:mod:`tests.tiny`, eager attention, ``config.architectures`` set (the bridge reads the architecture from it) and
its query/key weights scaled up so that attention patterns are peaked (random init gives near-uniform ones, on
which a steering bug hides). Sliding-window families (Gemma 2, Gemma 3, Mistral) get a window of
:data:`WINDOW` tokens, so a prompt of a few dozen tokens is longer than the window, as a 600-token prompt is on
Gemma 3 270M (window 512).

``family_model(name, backend)`` boots it as a ``TransformerBridge`` or converts it to a ``HookedTransformer``
(TransformerLens 3.x) with TransformerLens' own config reader and weight converter. For the families whose
HookedTransformer config TransformerLens 3.9 knows only by a model name (Gemma 2, Gemma 3, OLMo), the named
config is taken and its sizes are replaced by the tiny model's (:func:`hooked_config`); the conversion is then
checked against the bridge's logits on the same weights (``tests/test_architectures.py``).

Add a family: one entry in :data:`FAMILIES` (the config class and its tiny keyword arguments), then run
``scripts/architectures_table.py`` in both worlds and look at the new row of ``docs/architectures.md``.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from tests.tiny import tiny_tokenizer

WINDOW = 8
"""The sliding window of the tiny sliding-window families, in tokens."""

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256)


@dataclass(frozen=True)
class Family:
    """One architecture family: its transformers config class, the tiny config, and what TL 3.9 calls it.

    Attributes:
        name: short name (table row).
        label: the family's usual name, e.g. ``"Gemma 3"``.
        config: the transformers config class name.
        kwargs: the tiny config's keyword arguments (on top of the vocabulary and special tokens).
        hooked_name: for families whose HookedTransformer config TransformerLens 3.9 builds only from a model
            name: that name (its sizes are replaced by the tiny model's); None: TL reads the HF config.
        sliding: whether some layers attend within a window of :data:`WINDOW` tokens.
        seed: the weights' seed. Qwen2's seed-0 draw is degenerate (it repeats two tokens whatever the prompt
            or steering), so the generation checks could not fail on it; seed 1 is an ordinary draw.
    """

    name: str
    label: str
    config: str
    kwargs: dict = field(default_factory=dict)
    hooked_name: Optional[str] = None
    sliding: bool = False
    seed: int = 0


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("llama", "Llama", "LlamaConfig", dict(COMMON)),
    Family("mistral", "Mistral", "MistralConfig", dict(COMMON, head_dim=16, sliding_window=WINDOW), sliding=True),
    Family("qwen2", "Qwen2", "Qwen2Config", dict(COMMON), seed=1),
    Family("qwen3", "Qwen3", "Qwen3Config", dict(COMMON, head_dim=16)),
    Family("gemma2", "Gemma 2", "Gemma2Config",
           dict(COMMON, head_dim=16, query_pre_attn_scalar=16, sliding_window=WINDOW,
                layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
           hooked_name="google/gemma-2-2b", sliding=True),
    Family("gemma3", "Gemma 3", "Gemma3TextConfig",
           dict(COMMON, head_dim=16, query_pre_attn_scalar=16, sliding_window=WINDOW,
                layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
           hooked_name="google/gemma-3-270m", sliding=True),
    Family("gpt2", "GPT-2", "GPT2Config", dict(n_embd=64, n_layer=2, n_head=4, n_positions=256)),
    Family("neox", "GPT-NeoX", "GPTNeoXConfig",
           dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=256, rotary_pct=0.5)),
    Family("phi3", "Phi-3", "Phi3Config", dict(COMMON)),
    # The paper's own GPT-J, and GPT-Neo (local attention in every other layer): on the bridge, TransformerLens
    # fires their hook_pattern after the HF attention has run, so edits are discarded (refused: hook_check).
    Family("gptj", "GPT-J", "GPTJConfig", dict(n_embd=64, n_layer=2, n_head=4, n_positions=256, rotary_dim=8)),
    Family("gptneo", "GPT-Neo", "GPTNeoConfig",
           dict(hidden_size=64, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
                window_size=WINDOW, max_position_embeddings=256), sliding=True),
    # OLMo 1 has no grouped-query attention (nor does TL's converter for it): one KV head per query head.
    Family("olmo", "OLMo", "OlmoConfig", dict(COMMON, num_key_value_heads=4), hooked_name="allenai/OLMo-1B-hf"),
]}


def family_config(name: str) -> Any:
    """The tiny transformers config of family ``name`` (vocabulary and special tokens of the tiny tokenizer)."""
    import transformers

    fam = FAMILIES[name]
    tok = tiny_tokenizer()
    cfg = getattr(transformers, fam.config)(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                            **fam.kwargs)
    cfg._attn_implementation = "eager"
    return cfg


@functools.lru_cache(maxsize=None)
def family_hf_model(name: str, seed: Optional[int] = None) -> tuple[Any, Any]:
    """``(hf_model, tokenizer)``: a tiny model of family ``name`` with peaked attention (seed: the family's)."""
    from transformers import AutoModelForCausalLM

    cfg = family_config(name)
    torch.manual_seed(FAMILIES[name].seed if seed is None else seed)
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    hf.config.architectures = [type(hf).__name__]  # the bridge tells the architecture from this
    with torch.no_grad():
        for pname, p in hf.named_parameters():
            if p.ndim == 2 and any(k in pname for k in ("q_proj", "k_proj", "c_attn", "query_key_value",
                                                         "qkv_proj")):
                p.mul_(4.0)
    return hf.eval(), tiny_tokenizer()


def fresh_hf_model(name: str, seed: Optional[int] = None) -> Any:
    """A new copy of :func:`family_hf_model` (the bridge swaps modules of the model it boots on in place)."""
    return copy.deepcopy(family_hf_model(name, seed)[0])


def hooked_config(name: str, hf: Any) -> Any:
    """The HookedTransformerConfig of a tiny model of family ``name``, built by TransformerLens 3.x.

    Families TL reads from a HF config go through :func:`pasta_lens.backends.hooked_from_hf`'s own reader.
    For the others (:attr:`Family.hooked_name`) TL's config of that named model is taken and every size is
    replaced by the tiny model's; the behaviour flags (normalisation, softcapping, window pattern, rotary
    base...) stay the family's.
    """
    from transformer_lens import loading_from_pretrained as loading
    from transformer_lens.config import HookedTransformerConfig

    fam = FAMILIES[name]
    c = hf.config
    from unittest import mock

    # TL 3.9 fetches the named model's HF config from the Hub before it writes the config it knows by name
    # (for OLMo it reads only `clip_qkv` from it); the tiny config stands in for that download.
    with mock.patch.object(loading.AutoConfig, "from_pretrained", return_value=copy.deepcopy(c)):
        base = loading.get_pretrained_model_config(fam.hooked_name, device="cpu", dtype=torch.float32)
    d = base.to_dict()
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    d.update(d_model=c.hidden_size, d_head=head_dim, n_heads=c.num_attention_heads, d_mlp=c.intermediate_size,
             n_layers=c.num_hidden_layers, n_ctx=c.max_position_embeddings, d_vocab=c.vocab_size,
             d_vocab_out=c.vocab_size, n_key_value_heads=kv_heads if kv_heads != c.num_attention_heads else None,
             rotary_dim=head_dim)
    d.pop("attn_scale", None)  # derived from the named model's d_head: recomputed from the tiny one's
    if getattr(c, "query_pre_attn_scalar", None):  # Gemma scales scores by this, not by d_head
        d.update(attn_scale=float(c.query_pre_attn_scalar) ** 0.5)
    if getattr(c, "sliding_window", None):
        d.update(window_size=c.sliding_window)
    if hasattr(c, "rms_norm_eps"):
        d.update(eps=c.rms_norm_eps)
    theta = (getattr(c, "rope_parameters", None) or {}).get("rope_theta")
    if theta:  # one rotary base (Gemma 3's per-layer-type bases stay TL's: the family's defaults)
        d.update(rotary_base=theta)
    if getattr(c, "layer_types", None) and d.get("attn_types") is not None:
        d.update(attn_types=["local" if t == "sliding_attention" else "global" for t in c.layer_types])
    elif d.get("attn_types") is not None:  # one type per layer of the tiny model, the named model's pattern
        d.update(attn_types=(d["attn_types"] * c.num_hidden_layers)[:c.num_hidden_layers])
    for key in ("n_params", "initializer_range"):
        d.pop(key, None)
    return HookedTransformerConfig(**{k: v for k, v in d.items()
                                      if k in HookedTransformerConfig.__dataclass_fields__
                                      and HookedTransformerConfig.__dataclass_fields__[k].init})


def hooked_model(name: str, hf: Any, tok: Any) -> Any:
    """A ``HookedTransformer`` (TransformerLens 3.x) holding the weights of the tiny ``hf`` of family ``name``."""
    from pasta_lens.backends import hooked_class, hooked_from_hf

    fam = FAMILIES[name]
    if fam.hooked_name is None:
        return hooked_from_hf(hf, tok, name=f"tiny-{name}")
    from transformer_lens import loading_from_pretrained as loading

    cfg = hooked_config(name, hf)
    state_dict = loading.get_pretrained_state_dict(fam.hooked_name, cfg, hf, dtype=torch.float32)
    cfg.model_name = f"tiny-{name}"
    model = hooked_class()(cfg, tok, move_to_device=False)
    model.load_and_process_state_dict(state_dict, fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    model.eval()
    return model


def build_model(name: str, backend: str = "bridge", seed: Optional[int] = None) -> Any:
    """A new tiny model of family ``name`` on ``backend`` (not cached: yours to change)."""
    from pasta_lens.backends import bridge_class

    hf, tok = family_hf_model(name, seed)
    if backend == "hooked":
        return hooked_model(name, hf, tok)
    model = bridge_class().boot_transformers(f"tiny-{name}", hf_model=fresh_hf_model(name, seed), tokenizer=tok)
    model.eval()
    return model


@functools.lru_cache(maxsize=None)
def family_model(name: str, backend: str = "bridge", seed: Optional[int] = None) -> Any:
    """:func:`build_model`, cached: treat it as read-only and add hooks only through contexts."""
    return build_model(name, backend, seed)
