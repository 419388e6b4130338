"""Is a plain Hugging Face model the bridge? The twin the fast engine runs on, and every condition it must meet.

:func:`hf_twin` builds a plain HF module tree from the bridge's config, on the meta device, and gives it the
bridge's very tensors (no copy, nothing of the bridge changed). Its forward equals the bridge's only if the bridge
runs stock code on exactly those tensors with nothing else attached; :func:`hf_engine_unavailable` and
:func:`hf_twin` check that, each failure named in a phrase:

=====================  =========================================================================================
model                  a ``TransformerBridge`` in its default (unprocessed, non-compatibility) mode, one device
generation options     greedy decoding (``do_sample=False``) and ``stop_at_eos`` only
hooks                  none of a user's (:func:`pasta_lens.model_hooks.find_user_hook`: TransformerLens hook
                       points, PyTorch forward / forward-pre / backward / backward-pre hooks on any module, the
                       libraries' own wiring excepted) and no process-wide module hook
                       (:func:`pasta_lens.model_hooks.find_process_wide_hook`)
code                   no ``forward`` assigned on an instance or a class; every module that is not
                       TransformerLens' own is of the very class the HF model builds at that place (no subclass,
                       parametrization or added module)
tensors                strict both ways: every twin tensor is the bridge's under the same HF name and every bridge
                       tensor is used (a parameter or buffer added, renamed or split, as GPT-2's ``c_attn``,
                       refuses); TransformerLens' own unembedding bias ``b_U`` is carried over
=====================  =========================================================================================

:func:`pasta_lens.generation.select_engine` runs the hooks path wherever one fails (``docs/engines.md``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from pasta_lens.backends import backend_of
from pasta_lens.model_hooks import find_process_wide_hook, find_user_hook, model_modules

if TYPE_CHECKING:
    from transformers import PreTrainedModel

WRAPPER = "._original_component"
"""How the bridge names a wrapped HF module's parameters: ``model.layers.0._original_component.self_attn...``;
dropping it gives the plain HF name."""


def _hf_name(bridge_name: str) -> str:
    return bridge_name.replace(WRAPPER, "")


def _stock_forward(cls: type) -> bool:
    """Whether ``cls.forward`` is the one its defining class was written with (not assigned from outside).

    A function keeps the module and qualified name it was defined under (``functools.wraps`` decorators copy
    them), so ``LlamaMLP.forward = my_forward`` shows as ``my_forward``; ``nn.Module``'s placeholder counts as
    stock (containers such as ``ModuleList`` never run it)."""
    owner = next(k for k in cls.__mro__ if "forward" in vars(k))
    fn = vars(owner)["forward"]
    if owner is nn.Module:
        return True
    return (
        getattr(fn, "__module__", None) == owner.__module__
        and getattr(fn, "__qualname__", None) == f"{owner.__qualname__}.forward"
    )


def _tl_class(cls: type) -> bool:
    return cls.__module__.startswith("transformer_lens.")


def _replaced_forward(model: Any) -> str | None:
    """Which module's ``forward`` is not its class's stock one, if any: assigned on an instance, or a class whose
    ``forward`` was replaced (:func:`_stock_forward`). The twin would not run the replacement as the bridge does."""
    for name, module in model_modules(model):
        if "forward" in vars(module):
            return f"module {name or '<root>'} has its own forward (an instance attribute)"
        if not _stock_forward(type(module)):
            return (
                f"{type(module).__qualname__}.forward was replaced (it is "
                f"{getattr(type(module).forward, '__qualname__', type(module).forward)!r})"
            )
    return None


def _foreign_module(model: Any, twin: nn.Module) -> str | None:
    """Which module of the bridge is neither TransformerLens' own wiring nor the very class the plain HF model
    builds at that place (a subclass, a parametrization, an added adapter), if any."""
    stock = {name: type(m) for name, m in twin.named_modules()}
    places: dict[int, list[str]] = {}  # the bridge reaches a module under aliases too (attn / self_attn)
    for n, m in model.original_model.named_modules(remove_duplicate=False):
        places.setdefault(id(m), []).append(_hf_name(n))
    for name, module in model_modules(model):
        cls = type(module)
        if _tl_class(cls):
            continue
        names = places.get(id(module))
        if names is None:
            return f"module {name or '<root>'} ({cls.__qualname__}) is not part of the bridge's HF model"
        if not any(stock.get(place) is cls for place in names):
            place = next((p for p in names if p in stock), names[0])
            want = stock[place].__qualname__ if place in stock else "no module"
            return f"module {place or '<root>'} is a {cls.__module__}.{cls.__qualname__} where the HF model has {want}"
    return None


def hf_engine_unavailable(model: Any, generate_kwargs: Mapping[str, Any] | None = None) -> str | None:
    """None when :func:`hf_generate_tokens` gives what the bridge's ``generate`` gives, else the reason it would
    not (one phrase): not a bridge, processed / compatibility-mode weights, parameters on several devices,
    non-greedy or unknown generation options, any hook on the model (a TransformerLens hook, a PyTorch module
    hook of any kind that is not the libraries' own wiring, a process-wide module hook), or a module that does not
    run stock code (a replaced ``forward``, a class other than the one the HF model builds there).
    :func:`hf_twin` adds the check of every parameter and buffer."""
    if backend_of(model) != "bridge" or not isinstance(getattr(model, "original_model", None), nn.Module):
        return "the model is not a TransformerBridge over a Hugging Face model"
    if getattr(model, "compatibility_mode", True) or getattr(model, "_weights_processed", True):
        return "the bridge's weights are processed (compatibility mode): its forward differs from HF's"
    devices = {p.device for p in model.original_model.parameters()}
    if len(devices) != 1:
        return f"the parameters lie on {len(devices)} devices"
    extra = set(generate_kwargs or {}) - {"do_sample", "stop_at_eos"}
    if extra or (generate_kwargs or {}).get("do_sample", False):
        return "generation options beyond greedy decoding were given: " + ", ".join(sorted(extra) or ["do_sample"])
    hooked = find_user_hook(model) or find_process_wide_hook()  # it must fire, so the bridge runs
    if hooked:
        return f"{hooked} is registered (it must fire, so the bridge runs)"
    patched = _replaced_forward(model)
    if patched:
        return f"{patched}, which the twin would not run"
    return None


def _meta_twin(hf: PreTrainedModel, config: Any) -> PreTrainedModel:
    from transformers.initialization import no_init_weights  # what from_pretrained itself uses

    config.output_attentions = config.output_hidden_states = False  # TransformerLens may have switched them on
    with torch.device("meta"), no_init_weights():
        return type(hf)(config)


def _tensors(module: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer of ``module`` under every name it has (aliases and tied weights included)."""
    return {
        **dict(module.named_parameters(remove_duplicate=False)),
        **dict(module.named_buffers(remove_duplicate=False)),
    }


def hf_twin(model: Any) -> tuple[PreTrainedModel, dict[int, nn.Module]]:
    """A plain HF model holding ``model.original_model``'s very tensors, and its attention module per layer.

    Built on the meta device from a copy of the config (no weight init, no memory), then every parameter and
    buffer is the bridge's own tensor under the same HF name: a strict ``load_state_dict(assign=True)`` for the
    state dict (so tied weights stay tied exactly as the bridge holds them), the non-persistent buffers (rotary
    frequencies) assigned by name. Nothing of the bridge changes; an in-place edit of a bridge weight is seen by
    the twin.

    Strict both ways: every tensor of the twin comes from the bridge, and every tensor the bridge's HF model
    holds is used by the twin. The one tensor TransformerLens adds, the unembedding's zero bias (``b_U`` on an
    ``lm_head`` built without bias: ``model.unembed.original_component.bias``), is placed on the twin's ``lm_head``
    the same way, so it is added in both.

    Every module that is not TransformerLens' own wiring must be of the very class the plain HF model builds at
    that place (no subclass, parametrization or added module).

    Raises:
        ValueError: a tensor of either side has no counterpart (an architecture whose bridge renames its modules,
            e.g. GPT-2; a parameter or buffer added to the bridge), the shapes differ, or a module is not stock.
            :func:`pasta_lens.generate` then takes the hooks path.
    """
    hf = model.original_model
    twin = _meta_twin(hf, copy.deepcopy(hf.config))
    bridge = {_hf_name(n): t for n, t in _tensors(hf).items()}
    wanted = _tensors(twin)
    missing = sorted(set(wanted) - set(bridge))
    if missing:  # e.g. GPT-2, whose bridge renames c_attn to qkv: the names no longer say which tensor is which
        raise ValueError(
            f"the bridge renames this architecture's modules, so a plain HF twin cannot find "
            f"{missing[0]!r} (and {len(missing) - 1} more) among the bridge's parameters"
        )
    persistent = twin.state_dict(keep_vars=True)
    try:
        twin.load_state_dict({n: bridge[n] for n in persistent}, strict=True, assign=True)
    except RuntimeError as err:  # shapes differ
        raise ValueError(f"the bridge's tensors do not fit a plain HF model of its config: {err}") from None
    for name in set(wanted) - set(persistent):  # non-persistent buffers (rotary inv_freq): not in a state dict
        owner_name, _, leaf = name.rpartition(".")
        twin.get_submodule(owner_name)._buffers[leaf] = bridge[name]
    used = {id(t) for t in _tensors(twin).values()}
    unused: dict[int, list[str]] = {}  # tensors of the bridge the twin has not taken, with all their names
    for name, tensor in bridge.items():
        if id(tensor) not in used:
            unused.setdefault(id(tensor), []).append(name)
    unembed_bias = getattr(getattr(getattr(model, "unembed", None), "original_component", None), "bias", None)
    for names in unused.values():
        at_home = sorted(n for n in names if _has_module(twin, n.rpartition(".")[0]))  # not a bridge alias
        name = (at_home or sorted(names))[0]
        owner_name, _, leaf = name.rpartition(".")
        owner = twin.get_submodule(owner_name) if at_home else None
        if bridge[name] is unembed_bias and isinstance(owner, nn.Linear) and leaf == "bias" and owner.bias is None:
            # TransformerLens' b_U on a bias-free lm_head (a zero buffer on 4.x, a zero parameter on 3.9): the twin's
            # lm_head adds it as the bridge's does, so an edit of b_U reaches both.
            if isinstance(bridge[name], nn.Parameter):
                owner._parameters[leaf] = bridge[name]
            else:
                del owner._parameters[leaf]
                owner.register_buffer(leaf, bridge[name])
            continue
        raise ValueError(
            f"the bridge holds {name!r}, which a plain HF model of this config does not have (a "
            "parameter or buffer added to the model, or one the bridge splits or renames, as GPT-2's "
            "c_attn into q, k, v): the twin would drop it"
        )
    foreign = _foreign_module(model, twin)
    if foreign:
        raise ValueError(f"{foreign}: the twin would run the stock module instead")
    twin.eval()
    hf_names = {id(m): _hf_name(n) for n, m in hf.named_modules()}
    attention = {
        layer: twin.get_submodule(hf_names[id(block.attn.original_component)])
        for layer, block in enumerate(model.blocks)
    }
    return twin, attention


def _has_module(root: nn.Module, name: str) -> bool:
    try:
        root.get_submodule(name)
    except AttributeError:
        return False
    return True
