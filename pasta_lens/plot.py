"""Pictures of steering: head scores, attention on the emphasised span, one head's attention row, ablations.

Every function takes plain data (tensors, arrays or lists), draws one matplotlib ``Figure``, saves it as a PNG
when given ``path`` (written atomically: a temporary file, then ``os.replace``) and returns the figure, so the
caller can adjust or close it. Nothing here runs a model; :mod:`pasta_lens.analysis` computes the numbers.

* :func:`plot_head_scores`: a layer x head heatmap of head scores, chosen heads outlined;
  :func:`plot_profile` draws one per task of a ``HeadProfile``.
* :func:`plot_span_attention`: per layer, the attention mass that queries put on the emphasised span,
  unsteered vs steered. PASTA's whole point is to raise it at the steered heads.
* :func:`plot_attention_row`: one head's attention row (one query) over the prompt's tokens, before and
  after steering, emphasised tokens highlighted; also an interactive HTML view when ``circuitsvis`` is installed.
* :func:`plot_ablation`: metric curves, e.g. a task metric vs the number of steered heads or vs alpha.

matplotlib is an optional dependency (``pip install 'pasta-lens[plot]'``). Figures are drawn on the
non-interactive Agg canvas without pyplot: they work without a display, change no global matplotlib state and
are not kept alive by pyplot's figure registry.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pasta_lens.io import atomic_write, atomic_write_text

PLOT_INSTALL = "pip install 'pasta-lens[plot]'"

ArrayLike = Any
"""A torch tensor, a numpy array or nested lists of numbers."""


def _new_figure(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """A Figure on the Agg canvas and its axes, or an ImportError naming the install command.

    Figures are made without pyplot, so nothing is registered globally (no figure piles up in a long session,
    and the user's own backend choice is left alone).
    """
    try:
        import matplotlib  # noqa: F401  (the top-level import is the one that fails when it is missing)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(f"pasta_lens.plot needs matplotlib. Install it with:\n    {PLOT_INSTALL}") from err
    fig = Figure(figsize=kwargs.pop("figsize", None), layout=kwargs.pop("layout", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _array(x: ArrayLike, name: str, ndim: int) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x, dtype=float)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional; got shape {arr.shape}.")
    return arr


def _save(fig: Any, path: str | os.PathLike | None) -> None:
    if path is None:
        return
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"path must end in .png (the figure is saved as a PNG); got {path!r}.")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"), suffix=".png")


def plot_head_scores(
    scores: ArrayLike,
    selected: Any | None = None,
    title: str = "Head scores",
    path: str | os.PathLike | None = None,
    *,
    colorbar_label: str = "score",
) -> Any:
    """Heatmap of per-head scores, layers on the y-axis and heads on the x-axis, selected heads outlined.

    NaN cells (heads that were not measured) are drawn grey. Scores of both signs get a diverging colour map
    centred on 0.

    Args:
        scores: ``[layer, head]`` scores (tensor, array or nested lists).
        selected: heads to outline: ``{layer: [heads]}``, ``[(layer, head), ...]`` or a ``HeadProfile``.
        title: the figure title.
        path: save the figure to this ``.png`` file.
        colorbar_label: what the colours mean.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> fig = plot_head_scores(torch.randn(30, 9), selected=[(20, 0), (21, 5)], path="scores.png")
    """
    arr = _array(scores, "scores", 2)
    n_layers, n_heads = arr.shape
    heads: tuple = ()
    if selected is not None:
        from pasta_lens.plan import normalize_heads, validate_heads

        heads = normalize_heads(selected)
        validate_heads(heads, n_layers, n_heads)
    fig, ax = _new_figure(figsize=(1.6 + 0.45 * n_heads, 1.2 + 0.22 * n_layers))
    _draw_head_scores(fig, ax, arr, heads, title, colorbar_label)
    _save(fig, path)
    return fig


def _draw_head_scores(
    fig: Any, ax: Any, arr: np.ndarray, heads: Sequence[tuple[int, int]], title: str, colorbar_label: str
) -> None:
    """One layer x head heatmap on ``ax``: NaN grey, diverging colours around 0, ``heads`` outlined."""
    import matplotlib  # importable: _new_figure checked
    from matplotlib.patches import Rectangle

    n_layers, n_heads = arr.shape
    finite = arr[np.isfinite(arr)]
    bound = float(np.abs(finite).max()) if finite.size else 1.0
    diverging = finite.size > 0 and finite.min() < 0 < finite.max()
    # NaN = not measured: grey, distinct from a score of 0
    cmap = matplotlib.colormaps["RdBu_r" if diverging else "viridis"].with_extremes(bad="0.8")
    im = ax.imshow(
        np.ma.masked_invalid(arr),
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        cmap=cmap,
        vmin=-bound if diverging else None,
        vmax=bound if diverging else None,
    )
    fig.colorbar(im, ax=ax, label=colorbar_label)
    for layer, head in heads:
        ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(n_heads))
    step = max(1, n_layers // 15)
    ax.set_yticks(range(0, n_layers, step))
    ax.set_title(title + (f"  ({len(heads)} heads outlined)" if heads else ""))


def plot_profile(
    profile: Any,
    path: str | os.PathLike | None = None,
    *,
    tasks: Sequence[str] | None = None,
) -> Any:
    """One heatmap per task of a ``HeadProfile``'s head scores, the selected heads outlined.

    A profile without scores (e.g. one imported from the official PASTA JSON) is drawn as its selection alone.

    Args:
        profile: a ``HeadProfile``, or a registry name / path for :func:`pasta_lens.registry.load_profile`.
        path: save the figure to this ``.png`` file.
        tasks: the tasks to draw (default: every task in the profile).

    Example:
        >>> fig = plot_profile("smollm2-135m-instruct", "smollm2.png")
    """
    from pasta_lens.head_profile import HeadProfile
    from pasta_lens.registry import load_profile

    if not isinstance(profile, HeadProfile):
        profile = load_profile(profile)
    names = list(tasks) if tasks is not None else list(profile.scores)
    missing = [name for name in names if name not in profile.scores]
    if missing:
        raise ValueError(f"The profile has no scores for task {missing[0]!r}; it has {sorted(profile.scores)}.")
    if names:
        tables = [_array(profile.score_table(name), name, 2) for name in names]
        label = "objective change, head steered alone"
    else:  # selection only
        table = np.zeros((profile.n_layers, profile.n_heads))
        for layer, head in profile.heads:
            table[layer, head] = 1.0
        names, tables, label = ["selected heads"], [table], "selected"
    fig, axes = _new_figure(
        1,
        len(tables),
        squeeze=False,
        layout="constrained",
        figsize=((1.6 + 0.45 * profile.n_heads) * len(tables), 1.6 + 0.22 * profile.n_layers),
    )
    for ax, name, table in zip(axes[0], names, tables):
        _draw_head_scores(fig, ax, table, profile.heads, name, label)
    fig.suptitle(f"{profile.model_name}: {profile.method}, alpha={profile.alpha}, k={profile.k}, {profile.strategy}")
    _save(fig, path)
    return fig


def plot_span_attention(
    unsteered: ArrayLike,
    steered: ArrayLike,
    path: str | os.PathLike | None = None,
    *,
    title: str = "Attention mass on the emphasised span",
    steered_layers: Sequence[int] | None = None,
) -> Any:
    """Per layer, the attention mass on the emphasised span without and with steering.

    Args:
        unsteered: ``[layer]`` mass (e.g. ``SpanAttention.per_layer()[0]``), each in [0, 1].
        steered: ``[layer]`` mass with steering on.
        path: save the figure to this ``.png`` file.
        title: the figure title.
        steered_layers: layers that hold steered heads, shaded grey.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> sa = span_attention(model, em, heads={20: [0, 3]})
        >>> fig = plot_span_attention(*sa.per_layer(), steered_layers=[20], path="span.png")
    """
    before, after = _array(unsteered, "unsteered", 1), _array(steered, "steered", 1)
    if before.shape != after.shape:
        raise ValueError(f"unsteered and steered need one value per layer each; got {before.shape} and {after.shape}.")
    layers = np.arange(len(before))
    fig, ax = _new_figure(figsize=(max(5.0, 0.25 * len(layers) + 2), 3.4))
    for layer in steered_layers or ():
        ax.axvspan(layer - 0.5, layer + 0.5, color="0.9", zorder=0)
    ax.plot(layers, before, "o-", label="unsteered", color="tab:blue")
    ax.plot(layers, after, "s-", label="steered", color="tab:orange")
    ax.set_xlabel("layer")
    ax.set_ylabel("attention on span")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(-0.5, len(layers) - 0.5)
    ax.set_xticks(layers[:: max(1, len(layers) // 15)])
    ax.set_title(title + ("  (grey: steered layers)" if steered_layers else ""))
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    _save(fig, path)
    return fig


def plot_attention_row(
    tokens_str: Sequence[str],
    before: ArrayLike,
    after: ArrayLike,
    key_mask: ArrayLike,
    path: str | os.PathLike | None = None,
    *,
    title: str = "Attention of one query over the prompt",
    html_path: str | os.PathLike | None = None,
) -> Any:
    """One head's attention row (one query over all keys), before and after steering, as bars per token.

    Emphasised keys are drawn in orange and their tokens' labels in bold, so a reader sees at once how much of
    the row moved onto the span. With ``html_path`` the same data is also written as an interactive
    ``circuitsvis`` token view (hover a token to see both values); that needs ``pip install circuitsvis``.

    Args:
        tokens_str: the key tokens as strings, e.g. ``model.to_str_tokens(em.tokens[0])``.
        before: ``[key]`` unsteered attention of the query.
        after: ``[key]`` steered attention of the same query.
        key_mask: ``[key]`` True where the key is emphasised.
        path: save the figure to this ``.png`` file.
        title: the figure title (say which head and query).
        html_path: also write a self-contained circuitsvis HTML view here.

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> fig = plot_attention_row(model.to_str_tokens(em.tokens[0]), a0[-1], a1[-1], em.key_mask[0],
        ...                          title="L20H3, last query", path="row.png")
    """
    b, a = _array(before, "before", 1), _array(after, "after", 1)
    mask = _array(key_mask, "key_mask", 1).astype(bool)
    tokens = [str(t) for t in tokens_str]
    if not (len(tokens) == b.shape[0] == a.shape[0] == mask.shape[0]):
        raise ValueError(
            f"tokens_str, before, after and key_mask need one entry per key; got {len(tokens)}, "
            f"{b.shape[0]}, {a.shape[0]}, {mask.shape[0]}."
        )
    n = len(tokens)
    fig, axes = _new_figure(2, 1, figsize=(max(6.0, 0.32 * n + 1.5), 5.2), sharex=True, sharey=True)
    colors = np.where(mask, "tab:orange", "tab:blue")
    for ax, values, label in ((axes[0], b, "unsteered"), (axes[1], a, "steered")):
        ax.bar(np.arange(n), values, color=colors)
        ax.set_ylabel("attention")
        ax.set_title(f"{label}: {values[mask].sum():.2f} of the row on the span (orange)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_ylim(0, max(1e-6, float(max(b.max(), a.max()))) * 1.08)
    axes[1].set_xticks(np.arange(n))
    axes[1].set_xticklabels([repr(t)[1:-1] for t in tokens], rotation=90, fontsize=7)
    for label, emphasised in zip(axes[1].get_xticklabels(), mask):
        if emphasised:
            label.set_fontweight("bold")
            label.set_color("tab:orange")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    if html_path is not None:
        _write_circuitsvis_row(tokens, b, a, html_path)
    return fig


def _write_circuitsvis_row(
    tokens: list[str], before: np.ndarray, after: np.ndarray, html_path: str | os.PathLike
) -> None:
    if importlib.util.find_spec("circuitsvis") is None:
        raise ImportError(
            "html_path needs circuitsvis for the interactive view. Install it with:\n"
            "    pip install circuitsvis\nor leave html_path out (the PNG needs only matplotlib)."
        )
    import torch
    from circuitsvis.tokens import colored_tokens_multi

    values = torch.tensor(np.stack([before, after], axis=1), dtype=torch.float32)
    html = colored_tokens_multi(tokens, values, labels=["unsteered", "steered"])
    atomic_write_text(html_path, html.local_src)  # self-contained (the JS bundle is inlined): works offline


def plot_ablation(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    xlabel: str,
    path: str | os.PathLike | None = None,
    *,
    ylabel: str = "metric",
    title: str = "",
    logx: bool = False,
) -> Any:
    """Line plot of one or more ablation curves: metric vs a knob (number of heads, alpha, ...).

    Args:
        curves: ``{name: [(x, metric), ...]}``, one line per name; points are sorted by x.
        xlabel: what x is, e.g. ``"number of steered heads"`` or ``"alpha"``.
        path: save the figure to this ``.png`` file.
        ylabel: what the metric is.
        title: the figure title.
        logx: a log-scaled x-axis (useful for alpha).

    Returns:
        The matplotlib ``Figure``.

    Example:
        >>> fig = plot_ablation({"counterfact": [(1, 0.6), (5, 0.8), (10, 0.9)]}, "number of heads",
        ...                     ylabel="efficacy", path="heads.png")
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty mapping name -> [(x, metric), ...].")
    fig, ax = _new_figure(figsize=(5.5, 3.6))
    for name, points in curves.items():
        pts = _array(list(points), f"curves[{name!r}]", 2)
        if pts.shape[1] != 2 or pts.shape[0] == 0:
            raise ValueError(f"curves[{name!r}] must be a non-empty list of (x, metric) pairs; got shape {pts.shape}.")
        pts = pts[np.argsort(pts[:, 0], kind="stable")]
        ax.plot(pts[:, 0], pts[:, 1], "o-", label=str(name))
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)
    return fig
