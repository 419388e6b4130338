"""``KeyProjections``: the fitted artefact of the key-editing methods (SEKA, PRISM-Delta), saved with its provenance.

A key-editing method needs, per steered layer and key/value head, a ``d_head x d_head`` projection learned from the
model's own keys (:mod:`pasta_lens.methods.fit`). The artefact holds those tensors and everything needed to trust
and repeat them, as :class:`~pasta_lens.head_profile.HeadProfile` does for head sets: the model's identity (name, shape,
its behavioural :class:`~pasta_lens.fingerprint.ModelFingerprint`), the hook point the keys were read at, the fit
settings (``top_pct``, ``min_diff``, number of triplets and tokens, seed, data), the library version, the date and
the command.

File format: one ``.safetensors`` file (tensors without pickle) whose metadata holds the JSON header under
``"pasta_lens"``; written atomically (:func:`pasta_lens.io.atomic_write`). :func:`load_projections` with ``model=``
refuses a model of another shape, or other weights (fingerprint), unless ``allow_transfer=True``.

Tensors, ``L`` = the fitted layers (``layers``), ``H`` = key/value heads, ``d`` = ``d_head``:

==========================  ======================  ====================================================
method                      tensor                  meaning
==========================  ======================  ====================================================
``seka``                    ``pos`` [L, H, d, d]    ``P+``: top singular subspace of ``H^T H+ / N``
``seka``                    ``neg`` [L, H, d, d]    ``P-``: the complement of ``H^T H- / N``'s top subspace
``prism_delta``             ``diff`` [L, H, d, d]   ``P_delta``: top subspace of ``H^T (H+ - H-) / N``
both                        ``norm_diffs`` [L, H]   ``||H+ - H-||_F / N`` (heads below ``min_diff`` are 0)
``prism_delta`` + values    ``value_diff``,         the same for the value vectors (PRISM-Delta-V)
                            ``value_norm_diffs``
==========================  ======================  ====================================================
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pasta_lens.fingerprint import ModelFingerprint, identity_mismatch
from pasta_lens.head_profile import library_version
from pasta_lens.io import atomic_write

SCHEMA_VERSION = 1
FORMAT = "pasta_lens.key_projections"
METHODS = ("seka", "prism_delta")
KEY_POINTS = ("hook_k", "hook_k_normed")
LAYOUTS = ("bshd", "bhsd", "bs(hd)")


def detect_layout(shape: tuple[int, ...], n_pos: int, n_kv: int, d_head: int) -> str:
    """The layout of a key/value activation of ``shape`` for a pass of ``n_pos`` positions (see ``layouts``)."""
    if len(shape) == 3 and shape[1] == n_pos and shape[2] == n_kv * d_head:
        return "bs(hd)"
    if len(shape) == 4 and shape[3] == d_head and n_pos != n_kv:
        if shape[1:3] == (n_pos, n_kv):
            return "bshd"
        if shape[1:3] == (n_kv, n_pos):
            return "bhsd"
    raise ValueError(
        f"Cannot tell the layout of a key/value activation of shape {tuple(shape)} ({n_pos} positions, "
        f"{n_kv} heads of {d_head}): expected [batch, pos, head, d], [batch, head, pos, d] or "
        "[batch, pos, head * d]."
    )


def as_bshd(x: Tensor, layout: str, n_kv: int, d_head: int) -> Tensor:
    """A ``[batch, pos, head, d]`` view of a key/value activation laid out as ``layout``."""
    if layout == "bhsd":
        return x.transpose(1, 2)
    if layout == "bs(hd)":
        return x.view(x.shape[0], x.shape[1], n_kv, d_head)
    return x


def from_bshd(y: Tensor, layout: str, shape: torch.Size) -> Tensor:
    """The inverse of :func:`as_bshd`: ``y`` ``[batch, pos, head, d]`` back in ``layout`` (of ``shape``)."""
    if layout == "bhsd":
        return y.transpose(1, 2)
    if layout == "bs(hd)":
        return y.reshape(shape)
    return y


REQUIRED = {"seka": ("pos", "neg", "norm_diffs"), "prism_delta": ("diff", "norm_diffs")}
OPTIONAL = {"seka": (), "prism_delta": ("value_diff", "value_norm_diffs")}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class KeyProjections:
    """Fitted key (and value) projections for one model, with provenance (see the module docstring).

    Attributes:
        method: ``"seka"`` or ``"prism_delta"``.
        model_name, n_layers, n_heads, n_kv_heads, d_head: the model's identity and shape.
        key_point: where keys were read and are edited: ``"hook_k"`` (before RoPE) or ``"hook_k_normed"`` (after
            the key norm, before RoPE: Qwen3 / Gemma 3 on the bridge).
        layers: the fitted layers, ascending (the first axis of every tensor).
        tensors: name -> fp32 tensor (see the module docstring).
        settings: the fit settings (``top_pct``, ``min_diff``, ``n_triplets``, ``n_tokens``, ``seed``, ``data``).
        fingerprint: the model's behavioural fingerprint (None: only the shape is checked).
        weights_hash: unused by fits (kept so :func:`pasta_lens.fingerprint.identity_mismatch` applies as to profiles).
        library_version, date, command, provenance: how it was made.
        layouts: how the key (and value) hook lays out its activation: ``"bshd"`` ``[batch, pos, head, d]``,
            ``"bhsd"`` ``[batch, head, pos, d]`` (the bridge's ``hook_k_normed`` on Qwen3 / Gemma 3) or ``"bs(hd)"``
            ``[batch, pos, head * d]``; seen when fitting, used by the hooks.
        schema_version: the header layout version.
    """

    method: str
    model_name: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    key_point: str
    layers: tuple[int, ...]
    tensors: Mapping[str, Tensor] = field(repr=False)
    settings: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: ModelFingerprint | None = None
    weights_hash: str | None = None
    library_version: str = field(default_factory=library_version)
    date: str = field(default_factory=_now)
    command: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    layouts: Mapping[str, str] = field(default_factory=lambda: {"key": "bshd"})
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        if self.method not in METHODS:
            raise ValueError(f"KeyProjections.method must be one of {METHODS}; got {self.method!r}.")
        if self.key_point not in KEY_POINTS:
            raise ValueError(f"KeyProjections.key_point must be one of {KEY_POINTS}; got {self.key_point!r}.")
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"Key projections schema {self.schema_version} is not supported (this pasta-lens reads "
                f"{SCHEMA_VERSION}); upgrade pasta-lens or fit again."
            )
        for name in ("n_layers", "n_heads", "n_kv_heads", "d_head"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"KeyProjections.{name} must be a positive integer; got {value!r}.")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads}).")
        layers = tuple(int(x) for x in self.layers)
        if not layers or list(layers) != sorted(set(layers)) or layers[-1] >= self.n_layers or layers[0] < 0:
            raise ValueError(
                f"KeyProjections.layers must be distinct ascending layers of 0..{self.n_layers - 1}; got "
                f"{self.layers!r}."
            )
        set_("layers", layers)
        tensors = {
            str(k): (v.detach().to("cpu", torch.float32).contiguous() if isinstance(v, Tensor) else v)
            for k, v in dict(self.tensors).items()
        }
        known = REQUIRED[self.method] + OPTIONAL[self.method]
        missing = [k for k in REQUIRED[self.method] if k not in tensors]
        extra = [k for k in tensors if k not in known]
        if missing or extra:
            raise ValueError(
                f"{self.method} projections need tensors {list(REQUIRED[self.method])} (optional "
                f"{list(OPTIONAL[self.method])}); missing {missing}, unknown {extra}."
            )
        if ("value_diff" in tensors) != ("value_norm_diffs" in tensors):
            raise ValueError("value_diff and value_norm_diffs come together (PRISM-Delta-V); give both or neither.")
        square = (len(layers), self.n_kv_heads, self.d_head, self.d_head)
        for name, value in tensors.items():
            if not isinstance(value, Tensor):
                raise ValueError(f"KeyProjections.tensors[{name!r}] must be a tensor; got {type(value).__name__}.")
            want = square[:2] if name.endswith("norm_diffs") else square
            if tuple(value.shape) != want:
                raise ValueError(
                    f"KeyProjections.tensors[{name!r}] must have shape {want} (layers x kv heads"
                    f"{'' if name.endswith('norm_diffs') else ' x d_head x d_head'}); got "
                    f"{tuple(value.shape)}."
                )
        set_("tensors", tensors)
        for name in ("top_pct", "min_diff"):
            if name not in self.settings:
                raise ValueError(f"KeyProjections.settings must record {name!r} (the fit that made them).")
        set_("settings", dict(self.settings))
        set_("provenance", dict(self.provenance))
        layouts = dict(self.layouts)
        if (
            "key" not in layouts
            or set(layouts) - {"key", "value"}
            or not set(layouts.values()) <= set(LAYOUTS)
            or (("value" in layouts) != ("value_diff" in tensors))
        ):
            raise ValueError(
                f"KeyProjections.layouts must give the 'key' (and, with value projections, 'value') "
                f"hook's layout, one of {LAYOUTS}; got {self.layouts!r}."
            )
        set_("layouts", layouts)
        if isinstance(self.fingerprint, Mapping):
            set_("fingerprint", ModelFingerprint.from_dict(self.fingerprint))

    @property
    def has_values(self) -> bool:
        """Whether value projections were fitted (PRISM-Delta-V)."""
        return "value_diff" in self.tensors

    def layer_index(self, layer: int) -> int:
        """The position of ``layer`` along the tensors' first axis (``ValueError`` if it was not fitted)."""
        if layer not in self.layers:
            raise ValueError(
                f"Layer {layer} has no fitted projection (fitted layers: {self.layers[0]}.."
                f"{self.layers[-1]}); fit it (fit(..., layers=...)) or steer fitted layers only."
            )
        return self.layers.index(layer)

    def validate_for(self, model: Any, allow_transfer: bool = False) -> None:
        """Raise ``ValueError`` unless these projections were fitted on ``model`` (shape always, weights unless
        ``allow_transfer``)."""
        cfg = model.cfg
        shape = (
            int(cfg.n_layers),
            int(cfg.n_heads),
            int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads),
            int(cfg.d_head),
        )
        mine = (self.n_layers, self.n_heads, self.n_kv_heads, self.d_head)
        if shape != mine:
            raise ValueError(
                f"These {self.method} projections were fitted on {self.model_name!r} (layers, heads, kv "
                f"heads, d_head = {mine}); this model has {shape}: fit them on this model with "
                f"pasta_lens.methods.fit({self.method!r}, model)."
            )
        if allow_transfer:
            return
        mismatch = identity_mismatch(self, model)
        if mismatch is not None:
            raise ValueError(
                f"These {self.method} projections were fitted on other weights ({mismatch}): fit them on "
                "this model, or pass allow_transfer=True to use them anyway."
            )

    # ------------------------------------------------------------------------------------------- storage
    def header(self) -> dict[str, Any]:
        """The JSON header (everything but the tensors)."""
        return {
            "format": FORMAT,
            "schema_version": self.schema_version,
            "method": self.method,
            "model_name": self.model_name,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "d_head": self.d_head,
            "key_point": self.key_point,
            "layers": list(self.layers),
            "settings": dict(self.settings),
            "fingerprint": self.fingerprint.to_dict() if self.fingerprint is not None else None,
            "weights_hash": self.weights_hash,
            "library_version": self.library_version,
            "date": self.date,
            "command": self.command,
            "provenance": dict(self.provenance),
            "layouts": dict(self.layouts),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tensors and the JSON header to one ``.safetensors`` file, atomically.

        Example:
            >>> fit("seka", model).save("runs/seka-smollm2.safetensors")
        """
        from safetensors.torch import save_file

        header = json.dumps(self.header(), sort_keys=True)
        return atomic_write(
            path, lambda tmp: save_file(dict(self.tensors), tmp, metadata={"pasta_lens": header}), suffix=".safetensors"
        )


def load_projections(path: str | os.PathLike, model: Any = None, *, allow_transfer: bool = False) -> KeyProjections:
    """Read a file written by :meth:`KeyProjections.save`; with ``model``, check it was fitted on that model.

    Raises:
        ValueError: not such a file, an unknown header field or schema, or (with ``model``) another model.

    Example:
        >>> proj = load_projections("runs/seka-smollm2.safetensors", model)
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No key projections at {path}; make them with pasta_lens.methods.fit(...).save(path).")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a safetensors file ({err}); was it written by KeyProjections.save?") from None
    if "pasta_lens" not in meta:
        raise ValueError(
            f"{path} has no pasta_lens header: it was not written by KeyProjections.save (the authors' "
            ".pt projection files are not read; fit on your model with pasta_lens.methods.fit)."
        )
    header = json.loads(meta["pasta_lens"])
    if header.pop("format", None) != FORMAT:
        raise ValueError(f"{path}: the header's format is not {FORMAT!r}.")
    known = set(KeyProjections.__dataclass_fields__) - {"tensors"}
    extra = set(header) - known
    if extra:
        raise ValueError(f"{path}: unknown header fields {sorted(extra)}; upgrade pasta-lens.")
    try:
        projections = KeyProjections(tensors=tensors, **header)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    if model is not None:
        projections.validate_for(model, allow_transfer=allow_transfer)
    return projections
