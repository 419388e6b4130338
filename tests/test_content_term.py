"""The content terms: the content floor of ``--select-by metric`` and the content KL of ``--method learned``.

Selection: the harness is replaced by a table of metrics per head count (``evaluate`` is the one dependency swapped,
in the test only), so that the content floor alone decides between points; the rule is written out by hand here.
Learning: on the tiny random Llama, context-QA prompts with their gold answers (copied from the document by
construction) stand for the model's own answers; ground truth is a KL computed here from plain forwards and a finite
difference of the loss.
"""

import dataclasses
import json
import math
import re
from types import SimpleNamespace

import pytest
import torch

from pasta_lens import HeadProfile
from pasta_lens.cli import build_parser, main
from pasta_lens.cli.profile import recorded_command
from pasta_lens.evaluation import content_check, curve_record, metric_curve
from pasta_lens.evaluation import selection as selection_module
from pasta_lens.profiling import LearnedConfig, choose_point, content_targets, learn_alphas
from pasta_lens.profiling.learned import content_loss, content_teacher, document_positions, learned_hooks
from pasta_lens.profiling.learned import targets as targets_module
from pasta_lens.profiling.learned import train as train_module
from pasta_lens.tasks import get_task

# ------------------------------------------------------------------------------------------ content floor
UNSTEERED = {"correct": 0.8, "format": 0.1, "both": 0.1}
# context_qa metrics by number of steered heads: 1 keeps the content, 2 scores best but reads the document less
# (0.70 < 0.95 x 0.8 = 0.76), 3 loses it
BY_HEADS = {0: UNSTEERED, 1: {"correct": 0.78, "format": 0.3, "both": 0.3},
            2: {"correct": 0.70, "format": 0.6, "both": 0.5}, 3: {"correct": 0.50, "format": 0.5, "both": 0.4}}
JSON_BY_HEADS = {n: {"f_acc": 0.1 * n, "p_acc": 0.2} for n in range(4)}


def _fake_evaluate(model, tasks, methods, heads=None, **_):
    n = len(heads or ())
    table = {"context_qa": BY_HEADS, "json": JSON_BY_HEADS}
    return SimpleNamespace(summary={"tasks": {t.name: {m: dict(table[t.name][0 if m == "zero-shot" else n])
                                                       for m in methods} for t in tasks}})


def _curve(monkeypatch, tasks=("context_qa",), **kwargs):
    monkeypatch.setattr(selection_module, "evaluate", _fake_evaluate)
    scores = {t: torch.arange(12.0).reshape(3, 4) for t in tasks}  # top-k of one table: exactly k heads
    return metric_curve(None, scores, [1, 2, 3], tasks=list(tasks), n=4, progress=False, **kwargs)


def _headline(metrics):
    return (metrics["correct"] + metrics["format"]) / 2


def test_content_floor_rejects_a_point_that_reads_the_document_less(monkeypatch):
    curve = _curve(monkeypatch)
    assert [p.n_heads for p in curve] == [1, 2, 3]
    for p in curve:  # the rule, written out: correct >= 0.95 x unsteered correct
        correct = BY_HEADS[p.n_heads]["correct"]
        assert p.content == correct and p.content_ratio == pytest.approx(correct / 0.8)
        assert p.passes_content == (correct >= 0.95 * 0.8) == p.passes_floor
        assert p.metric == pytest.approx(_headline(BY_HEADS[p.n_heads]))
    best_score = max(curve, key=lambda p: p.metric)
    assert best_score.n_heads == 2 and not best_score.passes_content  # the floor has something to decide
    chosen = choose_point(curve)
    assert chosen.n_heads == 1 and chosen.passes_content and chosen.passes_floor
    # a lower floor lets the 2-head point through (0.70 >= 0.85 x 0.8 = 0.68), and it wins on the score
    assert choose_point(_curve(monkeypatch, content_floor=0.85)).n_heads == 2
    record = curve_record(curve)
    assert record["content_floor"] == 0.95 and record["unsteered_content"] == 0.8
    assert [(p["passes_content"], p["content_ratio"]) for p in record["points"]] == [
        (True, 0.975), (False, 0.875), (False, 0.625)]
    json.dumps(record)  # JSON-ready


def test_without_context_qa_nothing_changes(monkeypatch):
    curve = _curve(monkeypatch, tasks=("json",))
    assert curve.content_floor is None and curve.unsteered_content is None
    assert all(p.passes_content is None and p.content is None and p.passes_floor for p in curve)
    record = curve_record(curve)
    assert not {"content_floor", "unsteered_content", "content_rule"} & set(record)
    assert not any({"content", "content_ratio", "passes_content"} & set(p) for p in record["points"])
    assert record == curve_record(_curve(monkeypatch, tasks=("json",), content_floor=0.1))  # the floor is unused
    assert choose_point(curve).n_heads == 3


def test_content_check_and_bad_floors():
    assert content_check({"correct": 0.7}, {"correct": 0.8}, 0.95) == (0.7, pytest.approx(0.875), False)
    assert content_check({"correct": 0.77}, {"correct": 0.8}, 0.95)[2]
    assert content_check({"correct": 0.0}, {"correct": 0.0}, 0.95) == (0.0, None, True)  # nothing to lose
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"content_floor must be in \[0, 1\]"):
            content_check({"correct": 0.7}, {"correct": 0.8}, bad)
        with pytest.raises(ValueError, match=r"content_floor must be in \[0, 1\]"):
            metric_curve(None, {"json": torch.zeros(3, 4)}, [1], content_floor=bad, progress=False)


@pytest.mark.parametrize("argv,message", [
    (["--tasks", "context_qa", "--select-by", "metric", "--content-floor", "1.5"], "--content-floor is a fraction"),
    (["--tasks", "context_qa", "--content-floor", "0.9"], "--content-floor needs --select-by metric"),
    (["--tasks", "json", "--select-by", "metric", "--content-floor", "0.9"], "add context_qa to --tasks"),
    (["--tasks", "context_qa", "--k", "5", "--content-floor", "0.9"], "use them with --k auto"),
    (["--method", "learned", "--content-weight", "-1"], "--content-weight must be >= 0"),
])
def test_content_arguments_are_checked_before_the_model_loads(argv, message, capsys):
    assert main(["profile", "--model", "no-such-org/no-such-model"] + argv + ["--out", "x.json"]) == 2
    err = capsys.readouterr().err
    assert message in err and "no-such-model" not in err


def test_cli_content_floor_round_trips_into_provenance(tiny_dir, tmp_path):
    out = tmp_path / "qa.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "context_qa,json", "--n", "2", "--method", "attribution",
            "--k", "auto", "--ks", "2,4", "--val-n", "2", "--select-by", "metric", "--content-floor", "0.9",
            "--threads", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    prov = HeadProfile.load(out).provenance
    assert prov["content_floor"] == 0.9 and prov["metric_curve"]["content_floor"] == 0.9
    assert isinstance(prov["content_floor_met"], bool) and "content floor" in prov["k_chosen_on"]
    assert all(isinstance(p["passes_content"], bool) for p in prov["metric_curve"]["points"])
    command = HeadProfile.load(out).command
    assert "--content-floor 0.9" in command and command == recorded_command(build_parser().parse_args(argv))
    # the default floor applies whenever context_qa is a task, and is recorded
    default = tmp_path / "default.json"
    assert main(["profile", "--model", tiny_dir, "--tasks", "context_qa,json", "--from-profile", str(out), "--k",
                 "auto", "--ks", "4", "--val-n", "2", "--select-by", "metric", "--threads", "1", "--out",
                 str(default), "--quiet"]) == 0
    loaded = HeadProfile.load(default)
    assert loaded.provenance["content_floor"] == 0.95 and "--content-floor 0.95" in loaded.command


# -------------------------------------------------------------------------------------------- content KL
def _content_examples(model, n=3):
    """Context-QA prompts with their gold answers as targets, focus on the answer tokens copied from the document."""
    qa = get_task("context_qa")
    rows = qa.profiling_examples(model, "train", n=n, end_turn=True)
    docs = [e.document for e in qa.examples("train", n)]
    out = []
    for ex, doc in zip(rows, docs):
        focus = document_positions(model, ex, doc)
        if focus:
            out.append(dataclasses.replace(ex, focus=focus))
    assert out, "the gold answers are copied from their documents"
    return out, docs


def test_document_positions_are_the_answer_tokens_that_spell_document_words(llama):
    qa = get_task("context_qa")
    rows, exs = qa.profiling_examples(llama, "train", n=12, end_turn=True), qa.examples("train", 12)
    found = 0
    for ex, row in zip(exs, rows):
        at = document_positions(llama, row, ex.document)
        tok = llama.tokenizer
        for i in at:  # each focus token's text is part of a word of the answer that the document holds
            piece = tok.decode([int(row.tokens[0, i])])
            assert any(c.isalnum() for c in piece), (piece, ex.document)
        answer = tok.decode(row.tokens[0, row.n_prompt:].tolist())
        doc_words = set(re.findall(r"[^\W_]+", ex.document.lower()))
        copied = [w for w in re.findall(r"[^\W_]+", answer.lower()) if w in doc_words and (len(w) > 1 or w.isdigit())]
        found += bool(at)
        if not copied:
            assert at == ()
    assert found >= 6  # most gold answers spell a value of their document
    # the JSON key "answer" and the end-of-turn marker are no words of a document
    json_row = next(r for e, r in zip(exs, rows) if e.format_id == "json")
    json_ex = next(e for e in exs if e.format_id == "json")
    texts = [llama.tokenizer.decode([int(json_row.tokens[0, i])])
             for i in document_positions(llama, json_row, json_ex.document)]
    assert not any("answer" in t or "im_end" in t for t in texts)


def _kl_by_hand(model, ex, g, alpha_min=0.01):
    """mean over focus of KL(unsteered || steered), from two plain forwards."""
    at = torch.tensor(ex.focus) - 1
    with torch.no_grad():
        plain = torch.log_softmax(model(ex.tokens)[0, at].float(), -1)
        with model.hooks(fwd_hooks=learned_hooks(g, alpha_min, ex.key_mask)):
            steered = torch.log_softmax(model(ex.tokens)[0, at].float(), -1)
    return float((plain.exp() * (plain - steered)).sum(-1).mean())


def test_content_loss_is_zero_unsteered_positive_steered_and_reaches_g(llama):
    examples, _ = _content_examples(llama)
    ex, config = examples[0], LearnedConfig(content_weight=1.0)
    teacher = content_teacher(llama, ex)
    assert teacher.shape == (len(ex.focus), llama.cfg.d_vocab)
    off = torch.full((llama.cfg.n_layers, llama.cfg.n_heads), -math.inf)  # every head at alpha 1
    assert float(content_loss(llama, ex, off, config, teacher).detach()) == pytest.approx(0.0, abs=1e-6)
    g = torch.full_like(off, 3.0)
    loss = content_loss(llama, ex, g, config, teacher).detach()
    assert float(loss) > 1e-4 and float(loss) == pytest.approx(_kl_by_hand(llama, ex, g), rel=1e-4, abs=1e-7)
    g = torch.linspace(-2, 3, off.numel()).reshape(off.shape).requires_grad_(True)
    (grad,) = torch.autograd.grad(content_loss(llama, ex, g, config, teacher), [g])
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    layer, head = divmod(int(grad.abs().argmax()), llama.cfg.n_heads)  # finite difference on the steepest head
    eps, step = 1e-2, torch.zeros_like(off)
    step[layer, head] = eps
    numeric = (_kl_by_hand(llama, ex, g.detach() + step) - _kl_by_hand(llama, ex, g.detach() - step)) / (2 * eps)
    assert float(grad[layer, head]) == pytest.approx(numeric, rel=0.05, abs=1e-6)


def test_learning_with_the_content_term(llama, monkeypatch):
    examples, _ = _content_examples(llama)
    train = {"json": get_task("json").profiling_examples(llama, "train", n=2)}
    init = torch.zeros(llama.cfg.n_layers, llama.cfg.n_heads)
    steps = 2 * len(examples)  # every content example is drawn twice: its teacher must be computed once
    plain = learn_alphas(llama, train, init, LearnedConfig(steps=steps, lr=0.5), progress=False)
    calls = []
    teacher = train_module.content_teacher
    monkeypatch.setattr(train_module, "content_teacher", lambda m, ex: calls.append(ex) or teacher(m, ex))
    config = LearnedConfig(steps=steps, lr=0.5, content_weight=5.0)
    kept = learn_alphas(llama, train, init, config, content=examples, progress=False)
    assert len(calls) == len({id(ex) for ex in calls}) == len(examples)  # each teacher computed once, kept
    assert all("kl_content" in h for h in kept.history) and "kl_content" not in plain.history[0]
    assert kept.history[0]["loss"] == pytest.approx(plain.history[0]["loss"] + 5.0 * kept.history[0]["kl_content"])
    assert not torch.equal(kept.g, plain.g)  # the term's gradient moved the strengths
    assert kept.settings["content_weight"] == 5.0 and kept.settings["content"] == {"tasks": ["context_qa"],
                                                                                   "n": len(examples)}
    assert "content_weight" not in plain.settings and "content" not in plain.settings
    assert "kl_content_end" in kept.losses() and "kl_content_end" not in plain.losses()


def test_content_term_errors(llama, tmp_path):
    examples, docs = _content_examples(llama)
    train = {"json": get_task("json").profiling_examples(llama, "train", n=1)}
    init = torch.zeros(llama.cfg.n_layers, llama.cfg.n_heads)
    for bad in (-1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="content_weight must be a finite number >= 0"):
            LearnedConfig(content_weight=bad)
    with pytest.raises(ValueError, match="content_weight needs content examples"):
        learn_alphas(llama, train, init, LearnedConfig(steps=1, content_weight=1.0), progress=False)
    with pytest.raises(ValueError, match="content_weight is 0"):
        learn_alphas(llama, train, init, LearnedConfig(steps=1), content=examples, progress=False)
    with pytest.raises(ValueError, match="needs focus positions"):
        learn_alphas(llama, train, init, LearnedConfig(steps=1, content_weight=1.0),
                     content=[dataclasses.replace(examples[0], focus=None)], progress=False)
    # a checkpoint of a run without the term is not resumed with it
    ckpt = tmp_path / "learned.ckpt"
    learn_alphas(llama, train, init, LearnedConfig(steps=1), checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="different learned-alphas run"):
        learn_alphas(llama, train, init, LearnedConfig(steps=1, content_weight=1.0), content=examples,
                     checkpoint=ckpt, progress=False)
    # the tiny random model's own answers copy no word of their documents: nothing to keep, said so
    qa = get_task("context_qa")
    with pytest.raises(ValueError, match="copies a word of its document"):
        content_targets(llama, qa.profiling_examples(llama, "train", n=2, end_turn=True), docs[:2], 8)
    with pytest.raises(ValueError, match="one document per example"):
        content_targets(llama, qa.profiling_examples(llama, "train", n=2, end_turn=True), docs[:1], 8)


def test_cli_content_weight_round_trips_into_provenance(tiny_dir, tmp_path, monkeypatch):
    # the tiny random model's greedy answers copy nothing of a document: let its targets be the gold answers
    # (generation is the one step replaced; the positions, the term and the CLI run as they are)
    monkeypatch.setattr(targets_module, "own_continuations", lambda model, examples, *a, **k: list(examples))
    out = tmp_path / "learned.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json", "--n", "3", "--method", "learned", "--steps", "2",
            "--keep-below", "0.999", "--content-weight", "0.5", "--threads", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    profile = HeadProfile.load(out)
    prov = profile.provenance
    assert prov["content"]["weight"] == 0.5 and prov["content"]["task"] == "context_qa"
    assert 1 <= prov["content"]["n"] <= 3 and prov["content"]["of"] == 3
    assert prov["learned"]["content_weight"] == 0.5 and "content_term" in prov["learned"]
    assert "kl_content_end" in prov["losses"] and "content KL" in profile.method
    assert build_parser().parse_args(profile.command.split()[1:]).content_weight == 0.5
    without = tmp_path / "plain.json"
    assert main([a if a != str(out) else str(without) for a in argv if a not in ("--content-weight", "0.5")]) == 0
    plain = HeadProfile.load(without)
    assert "content" not in plain.provenance and "--content-weight" not in plain.command
    assert "content_weight" not in plain.provenance["learned"] and "content KL" not in plain.method
