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
from tests.tiny import tiny_model

DATA = Path(os.environ.get("PASTA_LENS_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
CF_TRAIN = DATA / "counterfact" / "train.json"


def counterfact_examples(model, n=3, start=0):
    """CounterFact cases as profiling examples: the new fact emphasised, objective log P(new) - log P(old[0])."""
    if CF_TRAIN.exists():
        cases = json.loads(CF_TRAIN.read_text())[start:start + n]
    else:  # keep the unit tests runnable without the data folder
        cases = [{"prompt": "The Eiffel Tower is in", "ground_truth": "Paris", "target_new": "Rome"}] * n
    out = []
    for case in cases:
        p = case["prompt"]
        text = f"Previously, {p} {case['ground_truth']}. *Currently, {p} {case['target_new']}.* {p}"
        em = emphasize(model, text)
        new = torch.tensor(model.tokenizer(" " + case["target_new"], add_special_tokens=False)["input_ids"])
        old = torch.tensor(model.tokenizer(" " + case["ground_truth"], add_special_tokens=False)["input_ids"])
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
    examples = counterfact_examples(smollm2, n=1)
    hyb = profile_heads(smollm2, examples, "hybrid", top_m=8, heads_per_batch=9, progress=False)
    att = profile_heads(smollm2, examples, "attribution", progress=False)
    exact_top = hyb.scores[hyb.exact]
    assert torch.isfinite(hyb.scores).all() and int(hyb.exact.sum()) == 8
    # the heads attribution likes most do help when steered exactly (the notes' +0.325 vs +0.336 check)
    assert float(exact_top.mean()) > 0
    assert _corr(att.scores[hyb.exact], exact_top) > 0.5


# ------------------------------------------------------------------------------------------------ honest hybrid
def _exact_by_hand(model, examples, head, alpha=0.01):
    """The change of each example's objective when ``head`` alone is steered: one plain forward per head."""
    out = []
    with torch.inference_mode():
        for ex in examples:
            base = float(ex.objective(model(ex.tokens))[0])
            with model.hooks(fwd_hooks=pasta_hooks([head], ex.key_mask, alpha)):
                out.append(float(ex.objective(model(ex.tokens))[0]) - base)
    return torch.tensor(out)


def test_hybrid_records_each_heads_estimator_and_ranks_exact_only_among_exact(llama, cf_llama):
    att = profile_heads(llama, cf_llama, "attribution", progress=False)
    hyb = profile_heads(llama, cf_llama, "hybrid", top_m=4, rescore_examples=2, progress=False)
    block = att.ranking()[:4]
    n_layers, n_heads = llama.cfg.n_layers, llama.cfg.n_heads
    exact_means = {}
    for layer in range(n_layers):
        for head in range(n_heads):
            h = (layer, head)
            if h in block:  # exact, over the same first 2 examples for every re-scored head
                by_hand = _exact_by_hand(llama, cf_llama[:2], h)
                exact_means[h] = float(by_hand.mean())
                assert bool(hyb.exact[h]) and int(hyb.counts[h]) == 2
                assert abs(float(hyb.scores[h]) - exact_means[h]) < 1e-4
                assert abs(float(hyb.std[h]) - float(by_hand.std())) < 1e-4  # std of the exact values
                torch.testing.assert_close(hyb.exact_per_example[:, layer, head], by_hand, atol=1e-4, rtol=0)
            else:  # attribution over all 3 examples, std too
                assert not bool(hyb.exact[h]) and int(hyb.counts[h]) == 3
                assert abs(float(hyb.scores[h] - att.scores[h])) < 1e-6
                assert abs(float(hyb.std[h] - att.std[h])) < 1e-6
                assert torch.isnan(hyb.exact_per_example[:, layer, head]).all()
    # the ranking: the attribution top-4 re-ordered by the exact means, then attribution order
    assert hyb.ranking()[:4] == tuple(sorted(block, key=lambda h: (-exact_means[h], h)))
    assert hyb.ranking()[4:] == att.ranking()[4:]
    assert hyb.n_exact == 2 and hyb.top_m == 4 and hyb.n_examples == 3
    torch.testing.assert_close(hyb.per_example, att.per_example)  # the attribution values, whole


def test_make_profile_says_what_was_exact_and_refuses_an_attribution_tail(llama, cf_llama):
    hyb = {"counterfact": profile_heads(llama, cf_llama, "hybrid", top_m=4, rescore_examples=2, progress=False)}
    inside = make_profile(llama, "tiny", hyb, k=3)
    assert inside.method == ("hybrid (attribution ranking of all 12 heads on 3 examples; its top 4 re-ordered by "
                             "exact scores on the first 2 examples)")
    meta = inside.provenance["estimators"]["counterfact"]
    assert meta["exact_examples"] == 2 and meta["n_examples"] == 3 and meta["k_within_exact"]
    assert [tuple(h) for h in meta["exact_head_list"]] == list(hyb["counterfact"].ranking()[:4])
    assert inside.heads == tuple(sorted(hyb["counterfact"].ranking()[:3]))
    with pytest.raises(ValueError, match="k=5 exceeds the exactly re-scored block"):
        make_profile(llama, "tiny", hyb, k=5)
    tail = make_profile(llama, "tiny", hyb, k=5, allow_attribution_tail=True)
    assert tail.method.endswith("; top-5 beyond place 4 by attribution")
    assert not tail.provenance["estimators"]["counterfact"]["k_within_exact"]


# ------------------------------------------------------------------------------------------------ stale resumes
def _with_contrast(examples, contrast_id):
    """The same prompts and targets, with another contrast token: a fixed (changed) objective."""
    out = []
    for ex in examples:
        n_prompt = ex.n_prompt
        target = ex.tokens[0, n_prompt:]
        out.append(ProfilingExample(ex.tokens, ex.key_mask, target_logprob(n_prompt, target,
                                                                           torch.tensor([contrast_id])),
                                    ex.attention_mask, ex.task))
    return out


def test_a_changed_objective_is_recomputed_not_reused(llama, cf_llama, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    profile_heads(llama, cf_llama, "attribution", checkpoint=ckpt, progress=False)
    fixed = _with_contrast(cf_llama, 7)
    calls = [0]
    resumed = profile_heads(llama, _counting(fixed, calls), "attribution", checkpoint=ckpt, progress=False)
    assert calls[0] == len(fixed)  # every example recomputed under the new objective
    fresh = profile_heads(llama, fixed, "attribution", progress=False)
    assert torch.equal(resumed.scores, fresh.scores)
    # an objective without a ``key`` is told apart by its values: a changed lambda is a new example
    plain = [ProfilingExample(ex.tokens, ex.key_mask, lambda lg: lg[:, -1, 3].float(), task="x") for ex in cf_llama]
    other = [ProfilingExample(ex.tokens, ex.key_mask, lambda lg: lg[:, -1, 4].float(), task="x") for ex in cf_llama]
    ckpt2 = tmp_path / "plain.ckpt"
    a = profile_heads(llama, plain, "attribution", checkpoint=ckpt2, progress=False)
    b = profile_heads(llama, other, "attribution", checkpoint=ckpt2, progress=False)
    assert torch.equal(b.scores, profile_heads(llama, other, "attribution", progress=False).scores)
    assert not torch.equal(a.scores, b.scores)


def test_heads_per_batch_does_not_block_a_resume(llama, cf_llama, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    first = profile_heads(llama, cf_llama, "exact", heads_per_batch=4, checkpoint=ckpt, progress=False)
    calls = [0]
    again = profile_heads(llama, _counting(cf_llama, calls), "exact", heads_per_batch=7, checkpoint=ckpt,
                          progress=False)
    assert calls[0] == 0 and torch.equal(again.scores, first.scores)


def test_wall_time_covers_every_segment(llama, cf_llama, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(Interrupt):
        profile_heads(llama, _interruptible(cf_llama, [2]), "attribution", checkpoint=ckpt, progress=False)
    first = torch.load(ckpt, weights_only=True)["segments_s"]
    assert len(first) == 1 and first[0] > 0
    time_before = __import__("time").perf_counter()
    resumed = profile_heads(llama, cf_llama, "attribution", checkpoint=ckpt, progress=False)
    this_segment = __import__("time").perf_counter() - time_before
    segments = torch.load(ckpt, weights_only=True)["segments_s"]
    assert len(segments) == 2 and segments[0] == first[0]
    assert first[0] + segments[1] - 1e-3 <= resumed.wall_time_s <= first[0] + this_segment + 1e-3


# ------------------------------------------------------------------------------------------------ faults
@pytest.mark.parametrize("content", [b"", b"\x80\x02not a checkpoint", b"PK\x03\x04cut zip"])
def test_unreadable_checkpoint_is_a_clear_error(llama, cf_llama, tmp_path, content):
    ckpt = tmp_path / "run.ckpt"
    ckpt.write_bytes(content)
    with pytest.raises(ValueError, match=r"run.ckpt is empty or corrupted.*delete .*run.ckpt to restart"):
        profile_heads(llama, cf_llama, "attribution", checkpoint=ckpt, progress=False)
    assert not (tmp_path / "run.ckpt.lock").exists()  # the failed run let go of its lock


def test_a_checkpoint_in_use_by_a_live_process_is_refused(llama, cf_llama, tmp_path):
    import socket
    import subprocess
    import sys

    from pasta_lens.io import LockedError

    ckpt = tmp_path / "run.ckpt"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "run.ckpt.lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        with pytest.raises(LockedError, match=f"in use by process {other.pid}"):
            profile_heads(llama, cf_llama, "attribution", checkpoint=ckpt, progress=False)
    finally:
        other.kill()
        other.wait()
    # that process is gone: its lock is stale and taken over
    profile_heads(llama, cf_llama[:1], "attribution", checkpoint=ckpt, progress=False)
    assert ckpt.exists() and not (tmp_path / "run.ckpt.lock").exists()


class _FusedAttention(torch.nn.Module):
    """A stand-in for a model whose attention is fused (SDPA / flash): it never calls ``hook_pattern``."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = torch.nn.Embedding(cfg.d_vocab, cfg.d_vocab)

    def hooks(self, fwd_hooks=()):
        from contextlib import nullcontext
        return nullcontext()  # the hook points exist by name, but nothing ever runs them

    def forward(self, tokens, **kwargs):
        return self.embed(tokens)


def test_attribution_raises_when_the_pattern_is_off_the_compute_path(llama, cf_llama):
    with pytest.raises(ValueError, match="never called them.*eager attention"):
        profile_heads(_FusedAttention(llama.cfg), cf_llama[:1], "attribution", progress=False)
    # a hook of the user's that detaches the attention output after the pattern: layer 1's pattern is cut off
    detach = [("blocks.1.attn.hook_z", lambda z, hook: z.detach())]
    with llama.hooks(fwd_hooks=detach):
        with pytest.raises(ValueError, match=r"does not depend on blocks.1.attn.hook_pattern.*\[1\]"):
            profile_heads(llama, cf_llama[:1], "attribution", progress=False)
