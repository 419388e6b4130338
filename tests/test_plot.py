"""pasta_lens.plot: each function returns a Figure, saves a PNG when asked, and rejects bad input clearly."""

import builtins
import importlib.util

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")  # in the test extras; the plot module itself needs the `plot` extra

from pasta_lens import plot  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def is_png(path):
    with open(path, "rb") as fh:
        return fh.read(8) == PNG_MAGIC and path.stat().st_size > 2000


def test_head_scores_heatmap_marks_selected_heads(tmp_path):
    scores = torch.randn(6, 4)
    path = tmp_path / "sub" / "scores.png"
    fig = plot.plot_head_scores(scores, selected={2: [1, 3], 5: [0]}, title="t", path=path)
    assert is_png(path)
    ax = fig.axes[0]
    outlined = {(round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in ax.patches}
    assert outlined == {(2, 1), (2, 3), (5, 0)}
    image = ax.images[0].get_array()
    np.testing.assert_allclose(np.asarray(image), scores.numpy(), rtol=1e-6)
    assert "3 heads outlined" in ax.get_title()


def test_head_scores_accepts_nan_and_rejects_bad_heads():
    grid = np.full((3, 2), np.nan)
    grid[1, 0] = 0.5
    fig = plot.plot_head_scores(grid)  # NaN cells (heads not measured) are fine: masked, drawn grey
    assert bool(np.ma.getmaskarray(fig.axes[0].images[0].get_array())[0, 0])
    with pytest.raises(ValueError, match="out of range"):
        plot.plot_head_scores(grid, selected=[(3, 0)])
    with pytest.raises(ValueError, match="2-dimensional"):
        plot.plot_head_scores([1.0, 2.0])


def test_span_attention_plot(tmp_path):
    before, after = torch.rand(5) * 0.3, torch.rand(5) * 0.3
    after[3:] = 0.95
    fig = plot.plot_span_attention(before, after, tmp_path / "span.png", steered_layers=[3, 4])
    assert is_png(tmp_path / "span.png")
    lines = fig.axes[0].get_lines()
    np.testing.assert_allclose(lines[0].get_ydata(), before.numpy(), rtol=1e-6)
    np.testing.assert_allclose(lines[1].get_ydata(), after.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="one value per layer"):
        plot.plot_span_attention(before, after[:4])


def test_attention_row_plot(tmp_path):
    tokens = ["<s>", "Maria", " is", " a", " nurse", "."]
    before = torch.tensor([0.5, 0.1, 0.1, 0.1, 0.1, 0.1])
    after = torch.tensor([0.05, 0.05, 0.05, 0.4, 0.4, 0.05])
    mask = torch.tensor([False, False, False, True, True, False])
    fig = plot.plot_attention_row(tokens, before, after, mask, tmp_path / "row.png", title="L1H2")
    assert is_png(tmp_path / "row.png")
    top, bottom = fig.axes
    assert [round(b.get_height(), 3) for b in bottom.patches] == [round(x, 3) for x in after.tolist()]
    assert "0.80" in bottom.get_title() and "0.20" in top.get_title()
    with pytest.raises(ValueError, match="one entry per key"):
        plot.plot_attention_row(tokens[:-1], before, after, mask)


def test_attention_row_html_with_circuitsvis(tmp_path):  # circuitsvis: in the test extra, so this always runs
    tokens, v = ["a", "b"], torch.tensor([0.3, 0.7])
    plot.plot_attention_row(tokens, v, v.flip(0), [True, False], html_path=tmp_path / "row.html")
    text = (tmp_path / "row.html").read_text()
    assert "ColoredTokensMulti" in text and "unsteered" in text


def test_attention_row_html_without_circuitsvis_names_the_fix(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "circuitsvis" else real(name, *a))
    with pytest.raises(ImportError, match="pip install circuitsvis"):
        plot.plot_attention_row(["a"], [1.0], [1.0], [True], html_path=tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_ablation_plot_sorts_points(tmp_path):
    fig = plot.plot_ablation({"counterfact": [(10, 0.9), (1, 0.5), (5, 0.7)], "json": [(1, 0.2), (10, 0.4)]},
                             "number of heads", tmp_path / "abl.png", ylabel="efficacy", logx=True)
    assert is_png(tmp_path / "abl.png")
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [1, 5, 10] and list(line.get_ydata()) == [0.5, 0.7, 0.9]
    with pytest.raises(ValueError, match="non-empty"):
        plot.plot_ablation({}, "x")
    with pytest.raises(ValueError, match=r"\(x, metric\) pairs"):
        plot.plot_ablation({"a": [(1, 2, 3)]}, "x")


def test_path_must_be_png(tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        plot.plot_span_attention([0.1], [0.2], tmp_path / "span.jpg")


@pytest.mark.parametrize("call", [
    lambda: plot.plot_head_scores([[1.0]]),
    lambda: plot.plot_span_attention([0.1], [0.2]),
    lambda: plot.plot_attention_row(["a"], [1.0], [1.0], [True]),
    lambda: plot.plot_ablation({"a": [(1, 2)]}, "x"),
])
def test_missing_matplotlib_names_the_extra(monkeypatch, call):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install 'pasta-lens\[plot\]'"):
        call()


def test_figures_are_not_kept_by_pyplot():
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    plot.plot_ablation({"a": [(1, 2)]}, "x")
    assert len(plt.get_fignums()) == before


def test_attention_command_on_a_tiny_model(llama, tmp_path):
    from pasta_lens.analysis import attention_report
    from pasta_lens.cli import build_parser

    text = "Maria is a nurse who lives in Paris. *Answer in JSON format.* John is a software engineer."
    report = attention_report(llama, text, [(1, 0), (2, 3)], out=tmp_path / "span.png",
                              row_out=tmp_path / "row.png")
    rows = [line.split() for line in report.splitlines()[2:2 + llama.cfg.n_layers]]
    assert [int(r[0]) for r in rows] == list(range(llama.cfg.n_layers))
    assert float(rows[0][1]) == float(rows[0][2])  # before the first steered layer: unchanged
    assert all(float(r[2]) > float(r[1]) for r in rows[1:])  # steered layers 1 and 2 gain
    assert is_png(tmp_path / "span.png") and is_png(tmp_path / "row.png")
    args = build_parser().parse_args(["attention", "a *b*", "--heads", "1:0", "--out", "x.png"])
    assert args.func.__name__ == "_cmd_attention" and args.out == "x.png"
