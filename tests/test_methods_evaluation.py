"""Every steering method can be named in the evaluation harness (``evaluate(..., methods=["instaboost:factor=5"])``)."""

import pytest
import torch

from pasta_lens.evaluation import candidate_token_logprobs, evaluate, parse_method
from pasta_lens import steer
from pasta_lens.generation import decode_new, generate_tokens, method_tokens
from pasta_lens.tasks import get_task
from pasta_lens.tasks.base import answer_ids, emphasis_of
from tests.test_evaluation import HEADS, cf_task, short_bios  # noqa: F401 (cf_task is a fixture)


def test_parse_method_takes_every_registered_method():
    m = parse_method("instaboost:factor=5,schedule=prompt")
    assert (m.steering, dict(m.params), m.heads, m.steered) == ("instaboost", {"factor": 5.0, "schedule": "prompt"},
                                                               "all", True)
    assert parse_method("seka:projections=runs/seka.safetensors,gain_pos=1").params == (
        ("gain_pos", 1.0), ("projections", "runs/seka.safetensors"))
    assert parse_method("pasta").steering == "pasta" and parse_method("spa").params == ()
    with pytest.raises(ValueError, match="takes factor="):
        parse_method("instaboost:alpha=0.1")


def test_evaluate_runs_other_methods_on_generation_and_choice_tasks(llama, cf_task):  # noqa: F811
    bios = short_bios()
    tasks = [get_task("json", bios=bios), cf_task]
    specs = ["zero-shot", "pasta", "instaboost:factor=1.3", "guide:delta=2", "spotlight:target=0.5", "spa:strength=2"]
    res = evaluate(llama, tasks, specs, n=2, heads=HEADS, batch_size=2, max_new_tokens=4, progress=False)
    by = {(r["task"], r["method"], r["uid"]): r for r in res.rows}
    assert {m for _, m, _ in by} == set(specs)
    ex = tasks[0].examples("test", 1)[0]
    rendered = tasks[0].render(llama, tasks[0].queries(ex)[0].markup)
    em = emphasis_of(llama, [rendered])
    direct = decode_new(llama, method_tokens(llama, em, "instaboost", "all", 4, params={"factor": 1.3}))[0]
    with steer(llama, parse_and_all(llama), em, 0.01):  # what the harness would do if it steered with PASTA
        as_pasta = decode_new(llama, generate_tokens(llama, em, 4))[0]
    assert direct != as_pasta and direct != decode_new(llama, generate_tokens(llama, em, 4))[0]
    assert by[("json", "instaboost:factor=1.3", ex.uid)]["outputs"][tasks[0].queries(ex)[0].key] == direct
    # SPA generates on its doubled batch (prompt + anchor-free copy) in the harness too, as method_tokens does
    spa = decode_new(llama, method_tokens(llama, em, "spa", "all", 4, params={"strength": 2.0}))[0]
    assert by[("json", "spa:strength=2", ex.uid)]["outputs"][tasks[0].queries(ex)[0].key] == spa
    uid = cf_task.examples("test", 1)[0].uid
    zero = by[("counterfact", "zero-shot", uid)]["outputs"]
    boosted = by[("counterfact", "spa:strength=2", uid)]["outputs"]
    assert zero["es"] != boosted["es"]  # the choice task is steered too
    assert res.summary["config"]["heads"]["instaboost:factor=1.3"] == [list(h) for h in parse_and_all(llama)]


def parse_and_all(model):
    return [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]


@pytest.mark.parametrize("spec,name,params", [("instaboost:factor=9", "instaboost", {"factor": 9.0}),
                                              ("spa:strength=3", "spa", {"strength": 3.0})])
def test_candidate_logprobs_with_a_method_reads_the_steered_logits(llama, cf_task, spec, name, params):  # noqa: F811
    """Choice scoring runs the method's hooks on the batch the method needs (SPA: the doubled batch, first half)."""
    from pasta_lens import methods

    ex = cf_task.examples("test", 1)[0]
    q = next(q for q in cf_task.queries(ex) if q.kind == "choice")
    r = cf_task.render(llama, q.markup)
    cands = list(q.candidates) + [" Paris", " the"]  # one-token candidates on the tiny tokenizer
    plain = candidate_token_logprobs(llama, r, cands)
    steered = candidate_token_logprobs(llama, r, cands, parse_and_all(llama), method=parse_method(spec))
    assert plain != steered
    em = emphasis_of(llama, [r])
    ids = [answer_ids(llama, c).tolist() for c in cands]
    assert any(len(i) == 1 for i in ids) and any(len(i) > 1 for i in ids)  # both kinds of rows are read
    n = em.tokens.shape[1]
    for c, lps in zip(ids, steered):  # each candidate alone, one row per run: prompt + candidate[:-1]
        tokens = torch.cat([em.tokens, torch.tensor([c[:-1]], dtype=torch.long)], dim=1)
        logp = torch.log_softmax(methods.run(llama, tokens, em.key_mask, name, **params)[0, n - 1:].float(), -1)
        assert lps == pytest.approx([float(logp[i, t]) for i, t in enumerate(c)], abs=1e-5)
