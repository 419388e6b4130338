"""Head profiling on tiny random models: scores, selection, resumable runs, bad input."""

import functools
import json
import os
from pathlib import Path

import pytest
import torch

from pasta_lens.objectives import ProfilingExample, target_logprob
from pasta_lens.profiling import (AblationPoint, HeadScores, ablation_curve, choose_k, exact_scores, make_profile,
                                  profile_heads, select_heads)
from pasta_lens.spans import emphasize
from pasta_lens.steering import pasta_hooks
from pasta_lens.tasks import data_file, load_counterfact_split, shipped_data_dir
from tests.tiny import tiny_model

# The CounterFact cases shipped inside the package, in file order (never a folder outside the repository).
CF_TRAIN = data_file(shipped_data_dir(), "train")


def counterfact_examples(model, n=3, start=0):
    """CounterFact cases as profiling examples: the new fact emphasised, objective log P(new) - log P(old[0])."""
    cases = load_counterfact_split(CF_TRAIN)[start:start + n]
    if len({c.case_id for c in cases}) != n:  # distinct cases: example digests (and resumes) depend on it
        raise ValueError(f"asked for {n} cases from {start}, got {len(cases)} distinct ones")
    out = []
    for case in cases:
        p = case.prompt
        text = f"Previously, {p} {case.target_true}. *Currently, {p} {case.target_new}.* {p}"
        em = emphasize(model, text)
        new = torch.tensor(model.tokenizer(" " + case.target_new, add_special_tokens=False)["input_ids"])
        old = torch.tensor(model.tokenizer(" " + case.target_true, add_special_tokens=False)["input_ids"])
        n_prompt = em.tokens.shape[1]
        tokens = torch.cat([em.tokens, new[None]], dim=1)
        out.append(ProfilingExample(tokens, em.key_mask, target_logprob(n_prompt, new, old), task="counterfact"))
    return out


@pytest.fixture(scope="module")
def cf_llama():
    return counterfact_examples(tiny_model("llama"), n=3)


def _corr(a, b):
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


# ------------------------------------------------------------------------------------------------ scores
def test_attribution_matches_exact_to_first_order(tiny):
    examples = counterfact_examples(tiny, n=2)
    att = profile_heads(tiny, examples, "attribution", alpha=0.99, progress=False)
    ex = profile_heads(tiny, examples, "exact", alpha=0.99, progress=False)
    assert att.scores.shape == (tiny.cfg.n_layers, tiny.cfg.n_heads)
    assert _corr(att.scores, ex.scores) > 0.999
    big = ex.scores.abs() > 0.2 * ex.scores.abs().max()
    torch.testing.assert_close(att.scores[big], ex.scores[big], rtol=0.05, atol=1e-4)


def test_exact_batched_equals_one_head_at_a_time(llama, cf_llama):
    example = cf_llama[0]
    heads = [(0, 0), (0, 3), (1, 2), (2, 1), (2, 3)]
    base_batched, changes = exact_scores(llama, example, 0.01, heads, heads_per_batch=3)
    with torch.inference_mode():
        base = float(example.objective(llama(example.tokens))[0])
        for head, change in zip(heads, changes):
            with llama.hooks(fwd_hooks=pasta_hooks([head], example.key_mask, 0.01)):
                steered = float(example.objective(llama(example.tokens))[0])
            assert abs((steered - base) - float(change)) < 1e-4, head
    assert abs(base_batched - base) < 1e-4
    assert changes.abs().max() > 1e-3  # steering does something: the comparison is not vacuous


def test_exact_scores_are_means_over_examples(llama, cf_llama):
    scores = profile_heads(llama, cf_llama, "exact", heads_per_batch=5, progress=False)
    per = torch.stack([exact_scores(llama, ex, 0.01, [(1, 1)], 2)[1][0] for ex in cf_llama])
    assert abs(float(scores.scores[1, 1]) - float(per.mean())) < 1e-5
    assert scores.exact.all() and scores.n_examples == 3 and scores.task == "counterfact"
    assert scores.per_example.shape == (3, llama.cfg.n_layers, llama.cfg.n_heads)
    torch.testing.assert_close(scores.std, scores.per_example.std(0))


def test_hybrid_rescoring_replaces_the_top_m(llama, cf_llama):
    att = profile_heads(llama, cf_llama, "attribution", progress=False)
    ex = profile_heads(llama, cf_llama, "exact", progress=False)
    hyb = profile_heads(llama, cf_llama, "hybrid", top_m=4, progress=False)
    top = att.ranking()[:4]
    assert int(hyb.exact.sum()) == 4 and all(bool(hyb.exact[h]) for h in top)
    for layer in range(llama.cfg.n_layers):
        for head in range(llama.cfg.n_heads):
            ref = ex if (layer, head) in top else att
            assert abs(float(hyb.scores[layer, head] - ref.scores[layer, head])) < 1e-4


# ------------------------------------------------------------------------------------------------ selection
def _table(rows):
    return HeadScores(scores=torch.tensor(rows, dtype=torch.float32), method="exact", alpha=0.01, n_examples=1)


TABLES = {
    "a": _table([[9.0, 8.0, 1.0], [7.0, 0.0, 2.0]]),   # ranking: (0,0) (0,1) (1,0) (1,2) (0,2) (1,1)
    "b": _table([[9.0, 0.0, 8.0], [1.0, 7.0, 2.0]]),   # ranking: (0,0) (0,2) (1,1) (1,2) (1,0) (0,1)
}


def test_select_heads_strategies_on_hand_made_tables():
    assert select_heads(TABLES, 1) == ((0, 0),)
    assert select_heads(TABLES, 3, "intersection") == ((0, 0),)
    assert select_heads(TABLES, 4, "intersection") == ((0, 0), (1, 2))
    assert select_heads(TABLES, 2, "union") == ((0, 0), (0, 1), (0, 2))
    assert select_heads(TABLES, 3, "task_specific", task="b") == ((0, 0), (0, 2), (1, 1))
    assert select_heads(TABLES, 6) == tuple((l, h) for l in range(2) for h in range(3))
    assert select_heads({"a": torch.tensor([[1.0, 1.0], [1.0, 0.0]])}, 2) == ((0, 0), (0, 1))  # ties: lower index


def test_select_heads_bad_input():
    with pytest.raises(ValueError, match="number of heads"):
        select_heads(TABLES, 7)
    with pytest.raises(ValueError, match="between 1"):
        select_heads(TABLES, 0)
    with pytest.raises(ValueError, match="task="):
        select_heads(TABLES, 2, "task_specific")
    with pytest.raises(ValueError, match="strategy"):
        select_heads(TABLES, 2, "majority")
    with pytest.raises(ValueError, match="at least one task"):
        select_heads({}, 2)
    with pytest.raises(ValueError, match="shapes"):
        select_heads({"a": TABLES["a"], "c": _table([[1.0, 2.0]])}, 1)
    with pytest.raises(ValueError, match="number of heads"):
        TABLES["a"].top(7)


def test_ablation_curve_and_choose_k(llama, cf_llama):
    scores = {"counterfact": profile_heads(llama, cf_llama, "exact", progress=False)}
    val = {"counterfact": counterfact_examples(llama, n=2, start=10)}
    curve = ablation_curve(llama, scores, val, ks=[1, 3, 12], progress=False)
    assert [(k, n) for k, n, _ in curve] == [(1, 1), (3, 3), (12, 12)]  # (k, n_heads, metric) tuples
    assert set(curve[0].per_task) == {"counterfact"}
    top1 = scores["counterfact"].top(1)
    with torch.inference_mode():
        ref = []
        for ex in val["counterfact"]:
            base = float(ex.objective(llama(ex.tokens))[0])
            with llama.hooks(fwd_hooks=pasta_hooks(top1, ex.key_mask, 0.01)):
                ref.append(float(ex.objective(llama(ex.tokens))[0]) - base)
    assert abs(curve[0].metric - sum(ref) / len(ref)) < 1e-4
    assert choose_k(curve) == max(curve, key=lambda p: p.metric).k


def test_choose_k_prefers_fewer_heads_and_skips_empty_sets():
    curve = [AblationPoint(5, 0, 9.0, {}), AblationPoint(10, 4, 1.0, {}), AblationPoint(20, 9, 1.0, {}),
             AblationPoint(30, 15, 0.5, {})]
    assert choose_k(curve) == 10
    with pytest.raises(ValueError, match="non-empty"):
        choose_k([])


def test_make_profile_holds_selection_and_scores(llama, cf_llama):
    scores = {"counterfact": profile_heads(llama, cf_llama, "attribution", progress=False)}
    profile = make_profile(llama, "tiny-llama", scores, k=5, seed=0, command="test")
    assert profile.heads == tuple(sorted(scores["counterfact"].top(5)))
    torch.testing.assert_close(profile.score_table("counterfact"), scores["counterfact"].scores)
    assert profile.n_examples == {"counterfact": 3} and profile.method == "attribution (all 12 heads, 3 examples)"
    assert profile.provenance["estimators"]["counterfact"]["exact_examples"] == 0
    profile.validate_for(llama)


# ------------------------------------------------------------------------------------------------ resume
class Interrupt(RuntimeError):
    pass


def _interruptible(examples, budget):
    """The same examples, with objectives that raise once ``budget[0]`` calls have been made."""
    def wrap(objective):
        @functools.wraps(objective)  # keeps its ``key``: the same objective for checkpoints
        def obj(logits):
            if budget[0] <= 0:
                raise Interrupt("simulated kill")
            budget[0] -= 1
            return objective(logits)
        return obj
    return [ProfilingExample(ex.tokens, ex.key_mask, wrap(ex.objective), ex.attention_mask, ex.task)
            for ex in examples]


def _counting(examples, calls):
    def wrap(objective):
        @functools.wraps(objective)
        def obj(logits):
            calls[0] += 1
            return objective(logits)
        return obj
    return [ProfilingExample(ex.tokens, ex.key_mask, wrap(ex.objective), ex.attention_mask, ex.task)
            for ex in examples]


# objective calls before the simulated kill: attribution 1 per example; exact (12 heads, 4 rows a pass) 4 per
# example; hybrid 3 attribution calls, then 1 exact pass per example.
@pytest.mark.parametrize("method,budget", [("attribution", 2), ("exact", 6), ("hybrid", 4)])
def test_resume_after_interruption_gives_identical_result(llama, cf_llama, tmp_path, method, budget):
    kwargs = dict(method=method, top_m=3, heads_per_batch=4, progress=False)
    fresh_calls = [0]
    reference = profile_heads(llama, _counting(cf_llama, fresh_calls), **kwargs)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(Interrupt):
        profile_heads(llama, _interruptible(cf_llama, [budget]), checkpoint=ckpt, **kwargs)
    state = torch.load(ckpt, weights_only=True)
    assert 1 <= len(state["attribution"]) + len(state["exact"]) < (6 if method == "hybrid" else 3)
    calls = [0]
    resumed = profile_heads(llama, _counting(cf_llama, calls), checkpoint=ckpt, **kwargs)
    assert 0 < calls[0] < fresh_calls[0]  # finished examples were not recomputed
    assert torch.equal(resumed.scores, reference.scores)
    assert torch.equal(resumed.per_example, reference.per_example)
    assert torch.equal(resumed.exact, reference.exact) and resumed.baseline == reference.baseline
    calls[0] = 0
    again = profile_heads(llama, _counting(cf_llama, calls), checkpoint=ckpt, **kwargs)
    assert calls[0] == 0 and torch.equal(again.scores, reference.scores)  # a finished run costs nothing
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_of_another_run_is_refused_and_more_examples_reuse_it(llama, cf_llama, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    profile_heads(llama, cf_llama[:2], "attribution", checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match="different profiling run.*alpha"):
        profile_heads(llama, cf_llama[:2], "attribution", alpha=0.1, checkpoint=ckpt, progress=False)
    calls = [0]
    more = profile_heads(llama, _counting(cf_llama, calls), "attribution", checkpoint=ckpt, progress=False)
    assert calls[0] == 1  # only the third example was new
    assert torch.equal(more.scores, profile_heads(llama, cf_llama, "attribution", progress=False).scores)


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input_is_a_clear_error(llama, cf_llama):
    with pytest.raises(ValueError, match="no examples"):
        profile_heads(llama, [], progress=False)
    with pytest.raises(ValueError, match="empty emphasis"):
        ProfilingExample(cf_llama[0].tokens, torch.zeros_like(cf_llama[0].key_mask), cf_llama[0].objective)
    scalar = ProfilingExample(cf_llama[0].tokens, cf_llama[0].key_mask, lambda logits: logits[:, -1, 0].sum())
    for method in ("attribution", "exact"):
        with pytest.raises(ValueError, match="one value per batch row"):
            profile_heads(llama, [scalar], method, progress=False)
    with pytest.raises(ValueError, match="method"):
        profile_heads(llama, cf_llama, "gradient", progress=False)
    with pytest.raises(ValueError, match="alpha"):
        profile_heads(llama, cf_llama, alpha=1.0, progress=False)
    with pytest.raises(ValueError, match="ProfilingExample"):
        profile_heads(llama, ["not an example"], progress=False)
    with pytest.raises(ValueError, match="top_m"):
        profile_heads(llama, cf_llama, "hybrid", top_m=0, progress=False)


@pytest.mark.slow
def test_attribution_ranks_like_exact_on_smollm2(smollm2):
    """Attribution against exact steering on the real model: the first 4 CounterFact train cases (fixed in
    advance), each scored exactly on attribution's top 12 heads and on 12 seeded random other heads.

    Thresholds from a run on the first 8 cases (same heads rule): per-case Pearson r over the 24 heads was
    0.96-0.99, Spearman over the top 12 (mean over cases) 0.95; exact gain of the top 12 +0.99 vs +0.01 for the
    random 12. The asserts (r > 0.9 on every case, Spearman > 0.8, top beats random by > 0.3) leave room for
    numerics, not for attribution failing to rank: with scores unrelated to the exact ones, r would be ~0.
    """
    n, m = 4, 12
    examples = counterfact_examples(smollm2, n=n)
    att = profile_heads(smollm2, examples, "attribution", progress=False)
    assert torch.isfinite(att.scores).all() and att.per_example.shape == (n, 30, 9)
    top = list(att.top(m))
    others = [(layer, head) for layer in range(30) for head in range(9) if (layer, head) not in top]
    pick = torch.randperm(len(others), generator=torch.Generator().manual_seed(0))[:m].tolist()
    heads = top + [others[i] for i in pick]
    idx = tuple(torch.tensor(heads).T)
    exact = torch.stack([exact_scores(smollm2, ex, 0.01, heads, heads_per_batch=2 * m)[1] for ex in examples])
    for case in range(n):
        assert _corr(att.per_example[case][idx], exact[case]) > 0.9, case

    def ranks(t):
        return t.argsort().argsort().float()

    mean_att, mean_exact = att.scores[idx], exact.mean(0)
    assert _corr(ranks(mean_att[:m]), ranks(mean_exact[:m])) > 0.8
    # the heads attribution likes most do help when steered exactly, far more than random heads
    assert float(mean_exact[:m].mean()) > float(mean_exact[m:].mean()) + 0.3
