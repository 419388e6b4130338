"""Choosing k, strategy and schedule by the tasks' own metrics on validation generations (tiny random Llama).

Ground truth is recomputed here from the per-task metrics a point carries, with the headline metrics and the
fluency rule written out by hand, and checked against direct calls of the evaluation harness.
"""

import functools
import json

import pytest
import torch

from pasta_lens.cli import build_parser, main
from pasta_lens.cli.profile import recorded_command
from pasta_lens.evaluation import MetricPoint, evaluate, metric_curve
from pasta_lens.profiling import (AblationPoint, ablation_curve, choose_k, choose_point, make_profile, profile_heads,
                                  scores_from_profile, select_heads)
from tests.test_profiling import counterfact_examples
from tests.tiny import tiny_model

TASKS = ("json", "pronoun", "biasbios", "counterfact")
# the headline metrics of each task, written out (the tables' Average column), and who reports fluency
HEADLINE = {"json": ("f_acc", "p_acc"), "pronoun": ("acc_fluent", "a_acc_fluent"), "biasbios": ("acc",),
            "counterfact": ("es", "ps")}
FLUENT_TASKS = ("pronoun", "counterfact")
KS, STRATEGIES, SCHEDULES = (2, 6), ("intersection", "union", "task_specific"), ("all", "prompt")
RUN = dict(n=2, max_new_tokens=6, batch_size=2, progress=False)


def _scores():
    g = torch.Generator().manual_seed(0)
    return {t: torch.randn(3, 4, generator=g) for t in TASKS}


@functools.lru_cache(maxsize=None)
def _curve(backend, floor=0.95):
    return metric_curve(tiny_model("llama", backend=backend), _scores(), KS, STRATEGIES, SCHEDULES,
                        fluency_floor=floor, **RUN)


def _expected_score(point):
    per_task = [sum(point.metrics[t][m] for m in HEADLINE[t]) / len(HEADLINE[t]) for t in TASKS]
    return sum(per_task) / len(per_task)


def _expected_pass(point, curve, floor):
    return all(point.metrics[t]["fluency"] >= floor * curve.unsteered[t]["fluency"] for t in FLUENT_TASKS)


def test_every_strategy_k_and_schedule_is_evaluated_with_the_harness(llama, backend):
    curve = _curve(backend)
    assert [(p.strategy, p.k, p.schedule) for p in curve] == [(s, k, c) for s in STRATEGIES for k in KS
                                                              for c in SCHEDULES]
    scores = _scores()
    for p in curve:  # the heads are the selection's, the metrics the harness's for those heads and schedule
        for t in TASKS:
            want = select_heads(scores, p.k, p.strategy, task=t if p.strategy == "task_specific" else None)
            assert p.heads[t] == want
    for p in [p for p in curve if p.k == 6]:  # one k: every strategy x schedule, directly through evaluate
        for t in ("json", "counterfact"):
            assert p.heads[t], "choose ks whose sets are not empty"
            res = evaluate(llama, [t], [f"pasta:schedule={p.schedule}"], "validation", heads=list(p.heads[t]),
                           **RUN)
            direct = res.summary["tasks"][t][f"pasta:schedule={p.schedule}"]
            assert {m: direct[m] for m in HEADLINE[t]} == {m: p.metrics[t][m] for m in HEADLINE[t]}, (p, t)
    zero = evaluate(llama, ["pronoun"], ["zero-shot"], "validation", **RUN).summary["tasks"]["pronoun"]["zero-shot"]
    assert curve.unsteered_fluency["pronoun"] == pytest.approx(zero["fluency"])


def test_scores_and_floor_follow_the_documented_rule(backend):
    curve = _curve(backend)
    for p in curve:
        assert p.metric == pytest.approx(_expected_score(p))
        assert p.passes_floor == _expected_pass(p, curve, 0.95)
        assert p.criterion == "metric"
    # the tiny model's steering breaks some generations: the floor must have something to exclude
    assert {p.passes_floor for p in curve if p.n_heads} == {True, False}


def test_the_chosen_point_maximises_the_score_among_points_that_pass_the_floor(backend):
    curve = _curve(backend)
    passing = [p for p in curve if p.n_heads > 0 and _expected_pass(p, curve, 0.95)]
    best = choose_point(curve)
    assert best.passes_floor and best.n_heads > 0
    assert _expected_score(best) == pytest.approx(max(_expected_score(p) for p in passing))
    assert choose_k(curve) == best.k
    # without the floor the choice may only get better by the score
    loose = _curve(backend, floor=0.0)
    assert all(p.passes_floor for p in loose)
    assert choose_point(loose).metric >= best.metric


def _point(k, metric, passes, n_heads=3, schedule="all"):
    return MetricPoint(k=k, strategy="intersection", schedule=schedule, n_heads=n_heads, metric=metric,
                       per_task={"json": metric}, metrics={}, fluency={"pronoun": 1.0 if passes else 0.1},
                       fluency_ratio={"pronoun": 1.0 if passes else 0.1}, passes_floor=passes, heads={})


def test_choose_point_excludes_low_fluency_unless_nothing_passes():
    fluent, broken, empty = _point(10, 0.4, True), _point(20, 0.9, False), _point(5, 1.0, True, n_heads=0)
    assert choose_point([broken, fluent, empty]) is fluent  # the best score broke the text; no heads never wins
    fallback = choose_point([broken, _point(30, 0.2, False)])
    assert fallback is broken and not fallback.passes_floor  # none pass: the best of all, flagged
    tie = [_point(20, 0.5, True, n_heads=4), _point(10, 0.5, True, n_heads=4, schedule="prompt")]
    assert choose_point(tie) is tie[1]  # ties: fewer heads, then the smaller k
    with pytest.raises(ValueError, match="non-empty"):
        choose_point([])


def test_metric_curve_refuses_the_test_split_and_bad_settings(llama):
    scores = _scores()
    for kwargs, message in [(dict(split="test"), "never on 'test'"), (dict(fluency_floor=1.5), r"\[0, 1\]"),
                            (dict(strategies=["onion"]), "strategies must be"), (dict(ks=[0]), "positive"),
                            (dict(schedules=["all", "all"]), "distinct"), (dict(schedules=["sometimes"]), "schedule"),
                            (dict(headline={"json": ["bleu"]}), "not among its metrics")]:
        args = dict(ks=[2], **RUN) | kwargs
        with pytest.raises(ValueError, match=message):
            metric_curve(llama, scores, **args)
    with pytest.raises(ValueError, match="no scores for"):
        metric_curve(llama, {"json": scores["json"]}, [2], ["task_specific"], tasks=["json", "counterfact"], **RUN)


def test_ablation_points_say_their_criterion_and_strategy(llama):
    scores = {"cf": profile_heads(llama, counterfact_examples(llama, n=2), "attribution", progress=False)}
    curve = ablation_curve(llama, scores, {"cf": counterfact_examples(llama, n=1, start=4)}, [2, 4], "union",
                           progress=False)
    assert {(p.criterion, p.strategy) for p in curve} == {("logprob", "union")}
    assert tuple(curve[0]) == (curve[0].k, curve[0].n_heads, curve[0].metric)  # still a (k, n_heads, metric) tuple
    assert isinstance(curve[0], AblationPoint) and choose_k(curve) == choose_point(curve).k


@pytest.mark.parametrize("method", ["attribution", "hybrid"])
def test_scores_from_profile_rebuild_the_ranking(llama, method, tmp_path):
    examples = counterfact_examples(llama, n=2)
    scores = {"cf": profile_heads(llama, examples, method, top_m=5, progress=False),
              "cf2": profile_heads(llama, counterfact_examples(llama, n=2, start=3), method, top_m=5,
                                   progress=False)}
    saved = make_profile(llama, "tiny", scores, k=4, allow_attribution_tail=True).save(tmp_path / "p.json")
    from pasta_lens import load_profile

    rebuilt = scores_from_profile(load_profile(saved))
    for t in scores:
        assert rebuilt[t].ranking() == scores[t].ranking() and rebuilt[t].method == method
        assert rebuilt[t].exact_through() == scores[t].exact_through()
    for k in (1, 3, 5, 12):
        for strategy in ("intersection", "union"):
            assert select_heads(rebuilt, k, strategy) == select_heads(scores, k, strategy)
    with pytest.raises(ValueError, match="no scores for tasks"):
        scores_from_profile(load_profile(saved), ["json"])


# ------------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tests.tiny import tiny_hf_model

    path = tmp_path_factory.mktemp("tiny_llama_select")
    hf, tok = tiny_hf_model("llama")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _rows(folder):
    return sum(len(p.read_text().splitlines()) for p in folder.rglob("examples.jsonl"))


def test_profile_select_by_metric_end_to_end(tiny_dir, tmp_path, capsys):
    from pasta_lens import HeadProfile, load_profile

    out = tmp_path / "tiny.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json,counterfact", "--n", "2", "--method", "attribution",
            "--k", "auto", "--ks", "2,4,12", "--val-n", "2", "--select-by", "metric", "--strategies",
            "intersection,union,task_specific", "--schedules", "all,prompt", "--threads", "1", "--out", str(out),
            "--quiet"]
    assert main(argv) == 0
    assert "metric)" in capsys.readouterr().out
    profile = HeadProfile.load(out)
    prov = profile.provenance
    assert prov["selected_by"] == "metric" and "ablation_curve" not in prov
    points = prov["metric_curve"]["points"]
    assert {(p["strategy"], p["k"], p["schedule"]) for p in points} == {
        (s, k, c) for s in ("intersection", "union", "task_specific") for k in (2, 4, 12) for c in ("all", "prompt")}
    # ground truth from the record: best score among the points that pass the floor, steer heads and can be one
    # profile (task_specific of two tasks cannot); ties by fewer heads, smaller k, earlier point
    fine = [p for p in points if p["passes_floor"] and p["n_heads"] > 0 and p["strategy"] != "task_specific"]
    for p in points:  # the score is the mean of the tasks' headline values, recomputed from the metrics
        want = [sum(p["metrics"][t][m] for m in HEADLINE[t]) / len(HEADLINE[t]) for t in ("json", "counterfact")]
        assert p["score"] == pytest.approx(sum(want) / 2, abs=1e-4)
    best = max(fine, key=lambda p: (p["score"], -p["n_heads"], -p["k"], -points.index(p)))
    assert (profile.k, profile.strategy, prov["schedule"]) == (best["k"], best["strategy"], best["schedule"])
    assert prov["fluency_floor_met"] is True
    assert profile.heads == select_heads(scores_from_profile(profile), profile.k, profile.strategy)
    assert profile.command == recorded_command(build_parser().parse_args(argv))
    # rerun: every generation is reused from the kept rows, the same choice comes out
    rows = _rows(tmp_path / "tiny.json.ckpt" / "selection")
    assert rows > 0 and main(argv) == 0
    assert _rows(tmp_path / "tiny.json.ckpt" / "selection") == rows
    assert HeadProfile.load(out).heads == profile.heads
    # --from-profile reuses the scores: the log-prob criterion on them says so, without profiling again
    again = tmp_path / "again.json"
    assert main(["profile", "--model", tiny_dir, "--tasks", "json,counterfact", "--from-profile", str(out), "--k",
                 "auto", "--ks", "2,4", "--val-n", "1", "--out", str(again), "--quiet"]) == 0
    reused = load_profile(again)
    assert reused.provenance["selected_by"] == "logprob" and reused.provenance["scores_from"]["profile"] == str(out)
    assert reused.scores == profile.scores and reused.method == profile.method
    assert not (tmp_path / "again.json.ckpt").exists()  # nothing profiled
    assert json.loads(again.read_text())["command"].count("--from-profile") == 1


@pytest.mark.parametrize("argv,message", [
    (["--k", "5", "--select-by", "metric"], "use them with --k auto"),
    (["--schedules", "prompt"], "--schedules needs --select-by metric"),
    (["--select-by", "metric", "--schedules", "all,sometimes"], "--schedules"),
    (["--select-by", "metric", "--schedules", "all,all"], "distinct"),
    (["--strategies", "intersection,onion"], "--strategies takes distinct names"),
    (["--strategies", "task_specific", "--tasks", "json,counterfact"], "task_specific alone"),
    (["--select-by", "metric", "--fluency-floor", "1.5"], "--fluency-floor is a fraction"),
    (["--fluency-floor", "0.9"], "--fluency-floor needs --select-by metric"),
    (["--from-profile", "no-such-profile"], "no-such-profile"),
    (["--from-profile", "smollm2-135m-instruct", "--alpha", "0.1"], "pass --alpha 0.01"),
    (["--from-profile", "gpt-j-6b-pasta-top75", "--tasks", "json"], "has no scores for ['json']"),
    (["--threads", "0"], "--threads must be a positive"),
])
def test_selection_arguments_are_checked_before_the_model_loads(argv, message, capsys):
    assert main(["profile", "--model", "no-such-org/no-such-model"] + argv + ["--out", "x.json"]) == 2
    err = capsys.readouterr().err
    assert message in err and "no-such-model" not in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        build_parser().parse_args(["profile", "--select-by", "bleu"])


def test_evaluate_steers_with_the_schedule_a_profile_was_chosen_with(llama):
    scores = {"cf": profile_heads(llama, counterfact_examples(llama, n=1), "attribution", progress=False)}
    chosen = make_profile(llama, "tiny", scores, k=4, provenance={"schedule": "prompt"})
    plain = make_profile(llama, "tiny", scores, k=4)
    run = dict(n=2, batch_size=2, max_new_tokens=6, progress=False)

    def outputs(**kwargs):
        res = evaluate(llama, ["json"], ["pasta"], "validation", **run, **kwargs)
        return [r["outputs"] for r in res.rows], res.summary["config"]

    by_profile, config = outputs(profile=chosen)
    assert (config["schedule"], config["schedule_source"]) == ("prompt", "the profile's provenance")
    assert by_profile == outputs(heads=list(chosen.heads), schedule="prompt")[0]
    every, config = outputs(profile=chosen, schedule="all")  # an explicit schedule wins
    assert config["schedule_source"] == "argument" and every == outputs(profile=plain)[0]
    assert every != by_profile  # the two schedules differ here, so the check above can fail
    assert outputs(profile=plain)[1]["schedule"] == "all"
