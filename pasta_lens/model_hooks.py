"""Which hooks a model carries, and running it for a moment with none of a user's.

A TransformerLens model computes what its weights say plus whatever hooks are registered on it. Two kinds of
hooks can change an output:

* **TransformerLens hooks** on hook points (``model.hooks(...)``, ``run_with_hooks``, ``add_hook``, caches,
  SAELens' hooks): PyTorch hooks on a ``HookPoint`` module, listed in the point's ``fwd_hooks`` / ``bwd_hooks``
  (the bridge reads those lists to decide whether a point is hooked at all);
* **PyTorch module hooks** a user registers on any module of the model or, for a ``TransformerBridge``, of the
  Hugging Face model it wraps (``register_forward_hook``, forward pre-hooks, backward hooks and pre-hooks).

The libraries' own wiring is not a user's hook (:data:`LIBRARY_HOOKS`): the bridge's capture hooks feed its hook
points and do nothing while those are empty, and Hugging Face's output-capturing hooks record an output without
changing it. Hooks registered process-wide (``torch.nn.modules.module.register_module_forward_hook`` & co.)
belong to no model: :func:`hooks_disabled` leaves them alone, and :func:`find_process_wide_hook` reports them
(they fire on every module of every model, so the fast engine's plain twin would meet them differently).

Two consumers ask about the same set of hooks: :func:`find_user_hook` says whether one is registered (the fast
generation engine runs only where none must fire), and :func:`hooks_disabled` takes them off for the duration
of a ``with`` block and puts every one back afterwards, in its order, even when the block raises. The model's
identity (:mod:`pasta_lens.fingerprint`) is computed inside :func:`hooks_disabled`, so a user's ablation, patch
or SAE never changes which profile is found for the model.

Example:
    >>> with model.hooks(fwd_hooks=[("blocks.3.hook_resid_post", lambda x, hook: x * 1.5)]):
    ...     with hooks_disabled(model):
    ...         clean = model(tokens)          # the weights alone
    ...     edited = model(tokens)             # the user's hook is back
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import nn

LIBRARY_HOOKS = ("transformer_lens.", "transformers.")
"""Modules whose PyTorch hooks are the libraries' own wiring, not a user's: the bridge's capture hooks (which feed
its hook points, checked on their own) and Hugging Face's output-capturing hooks (installed on the first forward
that asks for attentions or hidden states; they record, never change, an output)."""

HOOK_DICTS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")
"""The per-module PyTorch hook tables (``{handle id: hook}``, in call order)."""


PROCESS_WIDE_HOOKS = (
    "_global_forward_pre_hooks",
    "_global_forward_hooks",
    "_global_backward_pre_hooks",
    "_global_backward_hooks",
)
"""PyTorch's process-wide module hook tables in ``torch.nn.modules.module`` (``register_module_forward_hook``,
``register_module_forward_pre_hook``, ``register_module_full_backward_hook``,
``register_module_full_backward_pre_hook``)."""


def is_library_hook(fn: Callable[..., Any]) -> bool:
    """Whether a PyTorch hook function is one of the libraries' own (defined in a :data:`LIBRARY_HOOKS` module)."""
    return getattr(fn, "__module__", None) is not None and str(fn.__module__).startswith(LIBRARY_HOOKS)


def has_foreign_hooks(hooks: Mapping[Any, Any]) -> bool:
    """Whether one module's hook table holds a hook that is not the libraries' own (:func:`is_library_hook`)."""
    return any(not is_library_hook(fn) for fn in hooks.values())


def hook_point_class() -> type:
    """TransformerLens' ``HookPoint`` class (the same in TransformerLens 3.x and 4.x)."""
    from transformer_lens.hook_points import HookPoint

    return HookPoint


def model_modules(model: Any) -> list[tuple[str, nn.Module]]:
    """Every module of ``model`` once, named: the model's own and, for a bridge, the Hugging Face model's."""
    found: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    trees = [("", model)]
    original = getattr(model, "original_model", None)
    if isinstance(original, nn.Module):
        trees.append(("original_model", original))
    for prefix, tree in trees:
        for name, module in tree.named_modules(prefix=prefix):
            if id(module) not in seen:
                seen.add(id(module))
                found.append((name, module))
    return found


def find_user_hook(model: Any) -> str | None:
    """Which hook of a user's is registered on ``model``, in a phrase, or None when there is none.

    A TransformerLens hook on a hook point (named as in ``model.hook_dict``), or a PyTorch module hook that is
    not the libraries' own wiring: exactly what :func:`hooks_disabled` takes off.

    Example:
        >>> with model.hooks(fwd_hooks=[("blocks.1.attn.hook_pattern", fn)]):
        ...     find_user_hook(model)
        'a TransformerLens hook on blocks.1.attn.hook_pattern'
    """
    for name, point in getattr(model, "hook_dict", {}).items():
        if getattr(point, "fwd_hooks", None) or getattr(point, "bwd_hooks", None):
            return f"a TransformerLens hook on {name}"
    hook_point = hook_point_class()
    for name, module in model_modules(model):
        tables = [getattr(module, table, None) or {} for table in HOOK_DICTS]
        if isinstance(module, hook_point) and any(tables):
            return f"a TransformerLens hook on {name}"
        if any(has_foreign_hooks(table) for table in tables):
            return f"a PyTorch hook on module {name or '<root>'}"
    return None


def find_process_wide_hook() -> str | None:
    """Which process-wide PyTorch module hook is registered, in a phrase, or None when there is none.

    Such a hook fires on every module of every model, in whatever tree it sits, so two module trees computing the
    same function (the bridge and the fast engine's plain HF twin) can still give it different calls and outputs.

    Example:
        >>> handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: None)
        >>> find_process_wide_hook()
        'a process-wide PyTorch module forward hook (register_module_forward_hook & co.)'
    """
    from torch.nn.modules import module as torch_module

    for table in PROCESS_WIDE_HOOKS:
        if getattr(torch_module, table, None):
            kind = table[len("_global_") : -1]  # "forward_pre_hook", ...
            return f"a process-wide PyTorch module {kind.replace('_', ' ')} (register_module_{kind} & co.)"
    return None


@contextmanager
def hooks_disabled(model: Any) -> Iterator[None]:
    """Run the body with none of a user's hooks on ``model``; restore every one afterwards, even on an exception.

    Takes off what :func:`find_user_hook` reports: every hook on a TransformerLens hook point (its PyTorch entries
    and its ``fwd_hooks`` / ``bwd_hooks`` lists) and every PyTorch module hook that is not the libraries' own.
    On exit each returns to its place in its table, in its order; hooks added inside the body stay (after the
    restored ones). The tables are edited in place for the body's duration, so do not run the same model from
    another thread meanwhile.

    Example:
        >>> with hooks_disabled(model):
        ...     fingerprint = ModelFingerprint.of(model)     # the weights' behaviour, whatever is hooked
    """
    hook_point = hook_point_class()
    taken: list[tuple[dict, dict, set]] = []  # (table, its entries before, the ids taken off)
    lists: list[tuple[Any, str, list]] = []  # (hook point, "fwd_hooks" / "bwd_hooks", the list before)
    try:
        for _, module in model_modules(model):
            is_point = isinstance(module, hook_point)
            for attr in HOOK_DICTS:
                table = getattr(module, attr, None)
                if not table:
                    continue
                off = {key for key, fn in table.items() if is_point or not is_library_hook(fn)}
                if off:
                    taken.append((table, dict(table), off))
                    for key in off:
                        del table[key]
            if is_point:
                for attr in ("fwd_hooks", "bwd_hooks"):
                    handles = getattr(module, attr, None)
                    if handles:
                        lists.append((module, attr, handles))
                        setattr(module, attr, [])
        yield
    finally:
        for point, attr, before in reversed(lists):
            setattr(point, attr, list(before) + [h for h in getattr(point, attr) if h not in before])
        for table, before, off in reversed(taken):
            now = dict(table)
            table.clear()
            for key, fn in before.items():
                if key in off or key in now:  # taken off, or left on and still there
                    table[key] = fn if key in off else now[key]
            for key, fn in now.items():
                if key not in table:  # added inside the body
                    table[key] = fn
