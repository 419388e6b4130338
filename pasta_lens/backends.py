"""The two TransformerLens model classes pasta_lens runs on, and the one place that tells them apart.

pasta_lens works on any model with TransformerLens' common surface (hook names ``blocks.L.attn.hook_pattern`` /
``hook_attn_scores``, ``run_with_hooks``, ``run_with_cache``, ``hooks()``, ``to_tokens``, ``tokenizer``, ``cfg``,
``generate``). Two classes provide it:

* ``"bridge"``: ``transformer_lens.model_bridge.TransformerBridge`` (TransformerLens 3.9 and 4.x), which wraps
  the Hugging Face model itself;
* ``"hooked"``: ``transformer_lens.HookedTransformer`` (TransformerLens 3.x only; removed in 4.x), which converts
  the Hugging Face weights into TransformerLens' own modules (optionally processed: ``fold_ln``,
  ``center_writing_weights``, ``center_unembed``). SAELens' ``HookedSAETransformer`` is one of these.

The rest of the library is duck-typed. The only behaviour that differs is how ``generate`` is told about left
padding: the bridge takes ``attention_mask=``; ``HookedTransformer.generate`` has no such argument and derives the
mask from the pad tokens when ``padding_side="left"`` (:func:`generate_padding_kwargs` checks that both masks
agree, so a left-padded batch equals its rows run alone on both).
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor

Backend = Literal["bridge", "hooked"]
BACKENDS: tuple[str, ...] = ("bridge", "hooked")

TL_MODEL_NAMES: dict[str, str] = {
    "Gemma3ForCausalLM": "google/gemma-3-270m",
}
"""Architectures whose HookedTransformer config TransformerLens knows only by model name (no config reader)."""


def hooked_class() -> Any:
    """``transformer_lens.HookedTransformer``, or an ImportError that names the TransformerLens that has it."""
    try:
        from transformer_lens import HookedTransformer
    except ImportError as err:  # TL 4.x raises ImportError even on attribute access
        raise ImportError(
            "backend='hooked' needs TransformerLens 3.x (HookedTransformer was removed in 4.0): "
            "`pip install 'transformer-lens==3.9.0'`, or use backend='bridge'."
        ) from err
    return HookedTransformer


def bridge_class() -> Any:
    """``transformer_lens.model_bridge.TransformerBridge``, or an ImportError naming the fix."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as err:  # TL 2.x has no bridge
        raise ImportError(
            "backend='bridge' needs TransformerLens >= 3.9 (TransformerBridge): "
            "`pip install 'transformer-lens>=3.9,<5'`."
        ) from err
    return TransformerBridge


def available_backends() -> tuple[str, ...]:
    """The backends the installed TransformerLens provides: ``("bridge", "hooked")`` on 3.9, ``("bridge",)`` on 4.x."""
    found = []
    for name, get in (("bridge", bridge_class), ("hooked", hooked_class)):
        try:
            get()
        except ImportError:
            continue
        found.append(name)
    return tuple(found)


def check_backend(backend: str) -> str:
    """Return ``backend`` if it is a known name, else raise ``ValueError`` listing them."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}.")
    return backend


def backend_of(model: Any) -> str:
    """``"hooked"`` for a ``HookedTransformer`` (or subclass, e.g. SAELens' ``HookedSAETransformer``), else
    ``"bridge"``."""
    try:
        if isinstance(model, hooked_class()):
            return "hooked"
    except ImportError:
        pass
    return "bridge"


def hooked_from_hf(
    hf: Any,
    tokenizer: Any,
    *,
    name: str | None = None,
    processing: bool = False,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Any:
    """A ``HookedTransformer`` holding the weights of the Hugging Face model ``hf``, built by TransformerLens.

    TransformerLens does every step, as its ``HookedTransformer.from_pretrained`` does: the config comes from
    ``loading_from_pretrained.get_pretrained_model_config`` (reading the HF config, written to a temporary
    folder; for architectures TransformerLens knows only by name, :data:`TL_MODEL_NAMES`, from that name), the
    weights from its converter for the architecture (``get_pretrained_state_dict(..., hf_model=hf)``, e.g.
    ``convert_llama_weights``) and the optional processing from ``load_and_process_state_dict``.
    ``from_pretrained`` itself is not used for a local config because it accepts only registered names.
    Nothing is downloaded; ``hf`` is not modified.

    Args:
        hf: a Hugging Face causal LM (eager attention), e.g. from ``AutoModelForCausalLM.from_pretrained``.
        tokenizer: its tokenizer.
        name: the model name recorded in ``cfg.model_name`` (its last ``/`` part; default: the HF class name).
        processing: apply TransformerLens' weight processing (``fold_ln``, ``center_writing_weights``,
            ``center_unembed``, ``fold_value_biases``). Log-probs are unchanged by it (up to float error).
        device, dtype: where and in which precision the HookedTransformer lives.

    Example:
        >>> hf = AutoModelForCausalLM.from_config(LlamaConfig(...), attn_implementation="eager")
        >>> model = hooked_from_hf(hf, tokenizer, name="tiny-llama")
    """
    cls = hooked_class()
    from transformer_lens import loading_from_pretrained as loading

    architecture = type(hf).__name__
    label = (name or architecture).rstrip("/").split("/")[-1]
    with tempfile.TemporaryDirectory(prefix="pasta_lens_hooked_") as tmp:
        if architecture in TL_MODEL_NAMES:
            source = TL_MODEL_NAMES[architecture]
        else:
            # A neutral folder name: TL guesses some architectures from words in the name ("llama", "gemma").
            source = os.path.join(tmp, "hf_config")
            config = copy.deepcopy(hf.config)
            config.architectures = [architecture]  # GGUF configs may lack it; TL reads the class from it
            if architecture == "GPT2LMHeadModel" and "n_ctx" not in config.to_dict():
                config.n_ctx = config.n_positions  # TL 3.9 reads n_ctx, which transformers 5 no longer writes
            config.save_pretrained(source)
        cfg = loading.get_pretrained_model_config(
            source, hf_cfg=hf.config.to_dict(), fold_ln=processing, device=device, dtype=dtype
        )
        state_dict = loading.get_pretrained_state_dict(source, cfg, hf, dtype=dtype)
    cfg.model_name = label
    model = cls(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        state_dict,
        fold_ln=processing,
        center_writing_weights=processing,
        center_unembed=processing,
        fold_value_biases=processing,
    )
    model.move_model_modules_to_device()
    model.eval()
    return model


def generate_padding_kwargs(
    model: Any, tokens: Int[Tensor, "batch pos"], attention_mask: Int[Tensor, "batch pos"]
) -> dict[str, Any]:
    """Keyword arguments that make ``model.generate(tokens, ...)`` respect a left-padded ``attention_mask``.

    The bridge takes the mask itself. ``HookedTransformer.generate`` has no ``attention_mask`` argument: with
    ``padding_side="left"`` it masks the leading pad tokens of each row. That equals ``attention_mask`` only if
    every padded position holds the tokenizer's pad token and no row's first real token is one; otherwise this
    raises ``ValueError`` instead of generating from a wrongly masked batch. ``padding_side="left"`` is passed
    even without padding: the tokenizer's default (right) would mask a prompt's trailing pad-like tokens.
    """
    if backend_of(model) == "bridge":
        return {"attention_mask": attention_mask}
    mask = attention_mask.to(tokens.device).bool()
    pad_id = model.tokenizer.pad_token_id
    leading_pad = (tokens == pad_id).long().cumprod(dim=-1).bool()
    if not torch.equal(leading_pad, ~mask):
        raise ValueError(
            "HookedTransformer.generate infers left padding from the pad token "
            f"(id {pad_id}), which does not reproduce this attention_mask (pad positions must hold the "
            "pad token and no prompt may start with it). Pad with model.tokenizer.pad_token_id (as "
            "pasta_lens.emphasize does), or generate the rows one by one."
        )
    return {"padding_side": "left"}
