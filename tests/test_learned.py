"""Learned per-head strengths on tiny random models: config, gradients, training, resume, the profile, steering,
harness, CLI."""

import json
import math

import pytest
import torch

from pasta_lens import HeadProfile, emphasize, pasta_hooks, steer
from pasta_lens.evaluation import evaluate, ranked_heads
from pasta_lens.objectives import ProfilingExample
from pasta_lens.profiling import LearnedConfig, init_logits, learn_alphas, learned_profile, profile_tasks
from pasta_lens.profiling.learned import (LearnedAlphas, example_loss, learned_hooks, protect_loss, protect_rows,
                                         step_indices, strengths_to_alphas)
from pasta_lens.tasks import get_task
from tests.reference import additive_reference_hooks
from tests.test_profiling import counterfact_examples
from tests.tiny import tiny_model

PROMPT = "Maria is a nurse who lives in Paris. *Answer in JSON.* Thanks."


def learn(model, examples, init, *, protect=None, checkpoint=None, **settings):
    """:func:`learn_alphas` with a :class:`LearnedConfig` of ``settings``, without a progress bar."""
    return learn_alphas(model, examples, init, LearnedConfig(**settings), protect=protect, checkpoint=checkpoint,
                        progress=False)


def _logits(model, tokens, hooks=()):
    with torch.inference_mode():
        return model.run_with_hooks(tokens, fwd_hooks=list(hooks))


def steering_examples(model, n=2, scale=20.0):
    """Examples whose objective rewards steering strongly: the logit change that full PASTA on every head makes at
    the last position, as a direction (so the gradient of every relevant head is large and points to steering)."""
    texts = [PROMPT, "The capital of France is Paris. *Previously, the Eiffel Tower was in Rome.* Currently it"][:n]
    out = []
    for i, text in enumerate(texts):
        em = emphasize(model, text)
        every = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
        base = _logits(model, em.tokens)[0, -1]
        full = _logits(model, em.tokens, pasta_hooks(every, em, 0.01))[0, -1]
        direction = (full - base) / (full - base).norm()

        def objective(logits, d=direction):
            return scale * (logits[:, -1].float() @ d.to(logits.device))

        objective.key = f"test-steering-direction:{i}:{scale}"
        out.append(ProfilingExample(em.tokens, em.key_mask, objective, task=f"t{i % 2}"))
    return {"a": [out[0]], "b": [out[1]]} if n == 2 else {"a": out}


@pytest.fixture(scope="module")
def strong():
    model = tiny_model("llama")
    return model, steering_examples(model)


# ------------------------------------------------------------------------------------- the steering itself
def test_learned_hooks_equal_the_additive_reference(llama):
    """The differentiable hooks steer exactly as PASTA at alpha_min ** sigmoid(g): checked per head against the
    official code's additive log(alpha) on the scores (no shared code)."""
    em = emphasize(llama, PROMPT)
    g = torch.linspace(-6, 6, llama.cfg.n_layers * llama.cfg.n_heads).reshape(llama.cfg.n_layers, -1)
    alphas = strengths_to_alphas(g, 0.01)
    ref_hooks = []
    for layer in range(llama.cfg.n_layers):
        for head in range(llama.cfg.n_heads):
            ref_hooks += additive_reference_hooks([(layer, head)], em.key_mask, float(alphas[layer, head]))
    ours = _logits(llama, em.tokens, learned_hooks(g, 0.01, em.key_mask))
    ref = _logits(llama, em.tokens, ref_hooks)
    assert (ours - ref).abs().max() <= 1e-4
    assert (ours - _logits(llama, em.tokens)).abs().max() > 1e-2  # the steering does something


def test_alphas_stay_within_alpha_min_and_one():
    g = torch.tensor([[-1e4, -50.0, -3.0, 0.0], [3.0, 50.0, 1e4, float("-inf")]])
    for alpha_min in (0.01, 1e-4, 0.5):
        learned = LearnedAlphas(g=g, init_g=g, alpha_min=alpha_min, steps=0, history=())
        a = learned.alphas
        assert bool(((a >= alpha_min) & (a <= 1.0)).all())
        assert math.isclose(float(a[0, 0]), 1.0) and math.isclose(float(a[1, 2]), alpha_min, rel_tol=1e-6)
        assert float(a[0, 3]) == pytest.approx(alpha_min ** 0.5)  # g = 0: half strength on the log scale
        assert bool((a[0, :3].diff() <= 0).all())  # stronger logit, smaller alpha


# ------------------------------------------------------------------------------------------ the gradient
def test_gradient_matches_finite_differences(llama):
    """d loss / d g computed by autograd equals a central finite difference (ground truth without autograd)."""
    ex = counterfact_examples(llama, n=1)[0]
    g = torch.full((llama.cfg.n_layers, llama.cfg.n_heads), -1.0, dtype=torch.float64).float()
    g = g + torch.linspace(-1, 1, g.numel()).reshape(g.shape)
    g.requires_grad_(True)
    loss, _ = example_loss(llama, ex, g, LearnedConfig(kl_weight=1.0))
    (grad,) = torch.autograd.grad(loss, [g])
    eps = 1e-2
    for layer, head in [(0, 1), (1, 3), (2, 2)]:
        bump = torch.zeros_like(g)
        bump[layer, head] = eps
        with torch.no_grad():
            up = float(example_loss(llama, ex, g.detach() + bump, LearnedConfig())[0])
            down = float(example_loss(llama, ex, g.detach() - bump, LearnedConfig())[0])
        numeric = (up - down) / (2 * eps)
        assert abs(numeric - float(grad[layer, head])) <= 2e-3 + 0.05 * abs(numeric), (layer, head)
    assert float(grad.abs().max()) > 1e-4


def test_training_moves_g_only_and_leaves_the_model_bit_identical(llama):
    examples = {"cf": counterfact_examples(llama, n=2)}
    before = {name: p.detach().clone() for name, p in llama.named_parameters()}
    flags = {name: p.requires_grad for name, p in llama.named_parameters()}
    init = torch.zeros(llama.cfg.n_layers, llama.cfg.n_heads)
    learned = learn(llama, examples, init, steps=3, lr=0.5, sparsity=0.0)
    assert not torch.equal(learned.g, init)  # the gradient reached g
    for name, p in llama.named_parameters():
        assert torch.equal(p.detach(), before[name]), name  # weights bit-identical
        assert p.grad is None, name  # no parameter gradient computed or stored
        assert p.requires_grad == flags[name], name  # nothing frozen or unfrozen on the model


# ------------------------------------------------------------------------------------------- training
def test_loss_decreases_with_a_strong_objective(strong):
    model, examples = strong
    init = torch.full((model.cfg.n_layers, model.cfg.n_heads), -3.0)
    learned = learn(model, examples, init, steps=20, lr=0.3, kl_weight=0.0, sparsity=0.0)
    losses = [h["loss"] for h in learned.history]
    assert len(losses) == 20
    assert losses[-1] < losses[0] - 1.0
    assert learned.losses(5)["loss_end"] < learned.losses(5)["loss_start"]
    assert float(learned.alphas.mean()) < float(strengths_to_alphas(init, 0.01).mean())  # steering grew
    assert all(h["task_gain"] >= -1e-6 for h in learned.history[1:])


def test_more_sparsity_keeps_fewer_heads(strong):
    model, examples = strong
    init = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    kept = {}
    for sparsity in (0.0, 2.0):
        learned = learn(model, examples, init, steps=20, lr=0.3, kl_weight=0.0, sparsity=sparsity)
        kept[sparsity] = learned.kept(0.5)
    assert len(kept[0.0]) > 0
    assert len(kept[2.0]) < len(kept[0.0])


def test_kl_term_is_zero_unsteered_and_positive_steered(llama):
    ex = counterfact_examples(llama, n=1)[0]
    off = torch.full((llama.cfg.n_layers, llama.cfg.n_heads), -1e4)  # alpha = 1 everywhere: no steering
    on = torch.full((llama.cfg.n_layers, llama.cfg.n_heads), 10.0)
    with torch.no_grad():
        _, parts_off = example_loss(llama, ex, off, LearnedConfig(kl_weight=1.0))
        _, parts_on = example_loss(llama, ex, on, LearnedConfig(kl_weight=1.0))
    assert abs(parts_off["kl"]) < 1e-6 and abs(parts_off["task_gain"]) < 1e-5
    assert parts_on["kl"] > 1e-4


def test_step_indices_are_seeded_epoch_permutations():
    sizes = {"a": 5, "b": 3}
    seen = [step_indices(sizes, s, 1, seed=0) for s in range(5)]
    assert sorted(x["a"][0] for x in seen) == [0, 1, 2, 3, 4]  # one epoch of a: each example once
    assert sorted(x["b"][0] for x in seen[:3]) == [0, 1, 2]
    assert seen == [step_indices(sizes, s, 1, seed=0) for s in range(5)]  # a function of (seed, step) alone
    other = [step_indices(sizes, s, 1, seed=1)["a"][0] for s in range(5)]
    assert other != [x["a"][0] for x in seen]
    two = step_indices(sizes, 1, 2, seed=0)["a"]
    assert two == [step_indices(sizes, 2, 1, seed=0)["a"][0], step_indices(sizes, 3, 1, seed=0)["a"][0]]


class _Interrupt:
    """An objective that raises KeyboardInterrupt on its n-th call (an interrupted run), else delegates."""

    def __init__(self, objective, n):
        self.objective, self.n, self.calls = objective, n, 0
        self.key = objective.key  # the same example: the checkpoint must accept the resumed run

    def __call__(self, logits):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.objective(logits)


def test_interrupted_run_resumes_to_the_identical_result(strong, tmp_path):
    model, examples = strong
    init = torch.full((model.cfg.n_layers, model.cfg.n_heads), -2.0)
    kw = dict(steps=7, lr=0.2, kl_weight=0.5, sparsity=0.01, per_step=1, seed=3)
    reference = learn(model, examples, init, **kw)
    # each step calls each example's objective twice (unsteered + steered): call 11 is inside step 5
    broken = {t: [ProfilingExample(e.tokens, e.key_mask, _Interrupt(e.objective, 11), task=e.task) for e in exs]
              for t, exs in examples.items()}
    path = tmp_path / "learned.ckpt"
    with pytest.raises(KeyboardInterrupt):
        learn(model, broken, init, checkpoint=path, checkpoint_every=2, **kw)
    assert torch.load(path, weights_only=True)["step"] == 4  # the last checkpoint before the interruption
    resumed = learn(model, examples, init, checkpoint=path, checkpoint_every=2, **kw)
    assert torch.equal(resumed.g, reference.g)
    assert resumed.history == reference.history and resumed.steps == 7
    assert not path.with_name(path.name + ".lock").exists()


def test_finished_run_continues_with_more_steps_and_refuses_other_settings(strong, tmp_path):
    model, examples = strong
    init = torch.full((model.cfg.n_layers, model.cfg.n_heads), -2.0)
    kw = dict(lr=0.2, kl_weight=0.5, sparsity=0.01)
    path = tmp_path / "learned.ckpt"
    learn(model, examples, init, steps=3, checkpoint=path, **kw)
    # the first segment's recorded time, made unmistakable: the resumed run must add it to its own
    state = torch.load(path, weights_only=True)
    assert len(state["segments_s"]) == 1
    torch.save({**state, "segments_s": [1000.0]}, path)
    continued = learn(model, examples, init, steps=6, checkpoint=path, **kw)
    straight = learn(model, examples, init, steps=6, **kw)
    assert torch.equal(continued.g, straight.g) and continued.history == straight.history
    assert continued.wall_time_s >= 1000.0  # the earlier segment counted
    assert torch.load(path, weights_only=True)["segments_s"][0] == 1000.0  # and kept in the file
    with pytest.raises(ValueError, match=r"different learned-alphas run \(differs in \['lr'\]\)"):
        learn(model, examples, init, steps=6, checkpoint=path, **{**kw, "lr": 0.3})
    with pytest.raises(ValueError, match="already taken 6 steps"):
        learn(model, examples, init, steps=4, checkpoint=path, **kw)


def test_bad_arguments_are_clear(llama):
    examples = {"cf": counterfact_examples(llama, n=1)}
    init = torch.zeros(llama.cfg.n_layers, llama.cfg.n_heads)
    with pytest.raises(ValueError, match=r"init must be a \[3, 4\]"):
        learn(llama, examples, torch.zeros(2, 2), steps=1)
    with pytest.raises(ValueError, match="at least one task"):
        learn(llama, {}, init)
    with pytest.raises(ValueError, match="config must be a LearnedConfig"):
        learn_alphas(llama, examples, init, {"steps": 1}, progress=False)


@pytest.mark.parametrize("settings, match", [
    (dict(steps=0), r"steps must be a positive integer; got 0 \(the default is 100\)"),
    (dict(per_step=1.5), "per_step must be a positive integer"),
    (dict(checkpoint_every=True), "checkpoint_every must be a positive integer"),
    (dict(lr=0.0), r"lr must be a finite number > 0"),
    (dict(kl_weight=-1.0), "kl_weight must be a finite number >= 0"),
    (dict(sparsity=float("inf")), "sparsity must be a finite number >= 0"),
    (dict(alpha_min=1.0), r"alpha_min must be in \[1e-30, 1\)"),
    (dict(gain_cap=0.0), r"gain_cap must be a finite number of nats > 0 \(or None for no cap\)"),
    (dict(close_weight=float("nan")), r"close_weight must be a finite number >= 0 \(0: off\)"),
    (dict(protect_weight="x"), "protect_weight must be a finite number >= 0"),
    (dict(schedule="later"), "Bad schedule"),
    (dict(base={(0, 1): 2.0}), "alpha lies in"),
    (dict(base={(-1, 1): 0.1}), "non-negative"),
    (dict(base=[(0, 1)]), r"base must be a mapping \{\(layer, head\): alpha\}"),
    (dict(protect_reference="steered"), "protect_reference must be one of"),
    (dict(protect_reference={"pronoun": "base"}), r"protect_reference 'base' .* base=\.\.\. \(CLI: --base-profile\)"),
    (dict(seed=1.0), "seed must be an integer"),
])
def test_learned_config_refuses_bad_settings_naming_the_fix(settings, match):
    with pytest.raises(ValueError, match=match):
        LearnedConfig(**settings)


def test_learned_config_normalises_and_records_the_run():
    config = LearnedConfig(schedule="decay:0.50", base={(2, 3): 0.05, (0, 1): 1}, close_weight=1, lr=1)
    assert config.schedule == "decay:0.5" and (config.close_weight, config.lr) == (1.0, 1.0)
    assert isinstance(config.close_weight, float) and isinstance(config.lr, float)
    assert list(config.base.items()) == [((0, 1), 1.0), ((2, 3), 0.05)]  # sorted, floats
    with pytest.raises(AttributeError):
        config.steps = 5  # frozen
    record = config.record()
    assert record["base"] == [[0, 1, 1.0], [2, 3, 0.05]] and record["protect"] is None
    # the record is what identifies a run: exactly these keys, so the checkpoints of earlier versions still resume
    assert list(record) == ["lr", "kl_weight", "sparsity", "alpha_min", "per_step", "seed", "schedule", "gain_cap",
                            "close_weight", "focus_weight", "early_weight", "protect", "base"]
    assert "steps" not in record and "checkpoint_every" not in record
    both = LearnedConfig(base={(0, 1): 0.1}, protect_reference={"cf": "base", "pronoun": "unsteered"},
                         protect_each=True)
    assert both.record(["cf", "pronoun"], 4)["protect"] == {
        "tasks": ["cf", "pronoun"], "n": 4, "weight": 1.0, "each": True,
        "reference": {"cf": "base", "pronoun": "unsteered"}}
    assert LearnedConfig().record(["pronoun"], 2)["protect"] == {"tasks": ["pronoun"], "n": 2, "weight": 1.0}
    with pytest.raises(ValueError, match="missing"):
        both.record(["cf", "pronoun", "json"], 6)


def test_init_logits_rank_heads_by_attribution(llama):
    examples = {"cf": counterfact_examples(llama, n=2), "cf2": counterfact_examples(llama, n=2, start=5)}
    scores = profile_tasks(llama, examples, "attribution", progress=False)
    g = init_logits(scores, init_bias=-4.0, init_scale=6.0)
    normalised = torch.stack([s.scores / s.scores.abs().max() for s in scores.values()]).mean(0)
    assert torch.allclose(g, -4.0 + 6.0 * normalised)
    best = int(normalised.flatten().argmax())
    assert int(g.flatten().argmax()) == best and float(g.max()) <= 2.0 + 1e-6


# --------------------------------------------------------------------------------------------- the profile
@pytest.fixture
def learned_tiny(llama):
    examples = steering_examples(llama)
    scores = profile_tasks(llama, examples, "attribution", progress=False)
    learned = learn(llama, examples, init_logits(scores), steps=15, lr=0.3, kl_weight=0.0, sparsity=0.0)
    return learned_profile(llama, "tiny-llama", learned, task_scores=scores, seed=0, command="test")


def test_learned_profile_round_trips_with_its_alphas(learned_tiny, tmp_path):
    profile = learned_tiny
    assert profile.head_alphas and set(profile.head_alphas) == set(profile.heads)
    assert all(a < 0.5 for a in profile.head_alphas.values())
    assert profile.method.startswith("learned (per-head alphas") and profile.k is None
    path = profile.save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    assert data["head_alphas"] == [[l, h, profile.head_alphas[(l, h)]] for l, h in profile.heads]
    loaded = HeadProfile.load(path)
    # (the in-memory fingerprint keeps full float precision, the file 6 decimals: compare what is saved)
    assert loaded.to_dict() == profile.to_dict() and loaded.head_alphas == profile.head_alphas
    assert len(loaded.provenance["alphas_all"]) == loaded.n_layers
    assert {"loss_start", "loss_end"} <= set(loaded.provenance["losses"])


def test_profiles_without_head_alphas_are_unchanged_and_still_load(llama, tmp_path):
    from tests.test_profile import _profile

    plain = _profile(llama)
    assert plain.head_alphas == {} and "head_alphas" not in plain.to_dict()  # old layout, byte for byte
    path = plain.save(tmp_path / "old.json")
    assert HeadProfile.load(path) == plain


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(head_alphas=[[0, 3, 0.1]]), r"missing \[\(2, 1\)\]"),
    (lambda d: d.update(head_alphas=[[0, 3, 0.1], [2, 1, 0.2], [1, 1, 0.3]]), r"not in heads \[\(1, 1\)\]"),
    (lambda d: d.update(head_alphas=[[0, 3, 0.1], [2, 1, 1.5]]), r"alpha must be in \(0, 1\]"),
    (lambda d: d.update(head_alphas=[[0, 3, 0.1], [2, 1, 1e-40]]), "below the floor"),
    (lambda d: d.update(head_alphas={"0": 1}), "list of \\[layer, head, alpha\\] triples"),
    (lambda d: d.update(head_alphas=[[0, 3, 0.1], [0, 3, 0.2], [2, 1, 0.1]]), "lists a head twice"),
])
def test_bad_head_alphas_are_refused(llama, edit, match):
    from tests.test_profile import _profile

    d = _profile(llama).to_dict()
    edit(d)
    with pytest.raises(ValueError, match=match):
        HeadProfile.from_dict(d)


# ------------------------------------------------------------------------------------------------ steering
def test_steer_with_a_learned_profile_uses_its_alphas(llama, learned_tiny):
    profile = learned_tiny
    em = emphasize(llama, PROMPT)
    mapping = dict(profile.head_alphas)
    expected = _logits(llama, em.tokens, pasta_hooks(profile.heads, em, alpha=mapping))
    with steer(llama, profile, em):
        got = _logits(llama, em.tokens)
    assert torch.equal(got, expected)
    assert torch.equal(_logits(llama, em.tokens, pasta_hooks(profile, em, model=llama)), expected)
    # an explicit alpha wins over the profile's own
    with steer(llama, profile, em, alpha=0.01):
        explicit = _logits(llama, em.tokens)
    assert torch.equal(explicit, _logits(llama, em.tokens, pasta_hooks(profile.heads, em, alpha=0.01)))
    assert (explicit - got).abs().max() > 1e-4  # the two strengths really differ
    # plain heads keep today's default, 0.01
    with steer(llama, profile.heads, em):
        plain = _logits(llama, em.tokens)
    assert torch.equal(plain, explicit)


def _candidate_logprobs_by_hand(model, rendered, candidates, reduce, alphas):
    """Each candidate's log-prob after the rendered prompt, with no code of the harness: one forward per candidate
    (prompt + candidate tokens, no padding), PASTA as the official additive log(alpha) on each steered head's
    scores (tests/reference.py, every row steered: schedule all), log_softmax by hand."""
    em = emphasize(model, [rendered.text], char_ranges=[rendered.char_spans], prepend_bos=rendered.prepend_bos)
    hooks = [hook for head, alpha in alphas.items() for hook in additive_reference_hooks([head], em.key_mask, alpha)]
    n = em.tokens.shape[1]
    out = []
    for candidate in candidates:
        ids = model.tokenizer(candidate, add_special_tokens=False, return_tensors="pt")["input_ids"]
        logits = _logits(model, torch.cat([em.tokens, ids.to(em.tokens.device)], 1), hooks)[0].float()
        logp = torch.log_softmax(logits[n - 1:-1], dim=-1)
        total = float(logp.gather(-1, ids[0, :, None].to(logp.device)).sum())
        out.append(total / ids.shape[1] if reduce == "mean" else total)
    return out


def test_harness_steers_pasta_at_the_profile_alphas(llama, learned_tiny):
    profile = learned_tiny
    assert str(profile.provenance["schedule"]) == "all"  # the reference steers every row
    task = get_task("counterfact")
    res = evaluate(llama, [task], ["pasta", "pasta:alpha=0.01", "random"], n=1, profile=profile,
                   max_new_tokens=2, progress=False)
    by = {r["method"]: r for r in res.rows}
    ex = task.examples("test", 1, 0)[0]
    q = task.queries(ex)[0]
    rendered = task.render(llama, q.markup)
    truth = _candidate_logprobs_by_hand(llama, rendered, q.candidates, q.reduce, profile.head_alphas)
    at_001 = _candidate_logprobs_by_hand(llama, rendered, q.candidates, q.reduce,
                                         {head: 0.01 for head in profile.heads})
    assert max(abs(a - b) for a, b in zip(truth, at_001)) > 1e-3  # the two strengths really differ
    assert by["pasta"]["outputs"][q.key] == pytest.approx(truth, abs=1e-5)
    assert by["pasta:alpha=0.01"]["outputs"][q.key] == pytest.approx(at_001, abs=1e-5)
    assert "alpha: per head" in res.summary["config"]["plans"]["pasta"]
    # an explicit evaluation alpha wins for every method
    forced = evaluate(llama, [task], ["pasta"], n=1, profile=profile, alpha=0.01, max_new_tokens=2, progress=False)
    assert forced.rows[0]["outputs"][q.key] == pytest.approx(at_001, abs=1e-5)


def test_ranking_of_a_learned_profile():
    own = {(0, 1): 0.2, (2, 3): 0.05, (1, 1): 0.4}

    class P:
        heads = ((0, 1), (1, 1), (2, 3))
        head_alphas = own
        scores = {"t": [[0, 9, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]}

    assert ranked_heads(P()) == ((2, 3), (0, 1), (1, 1))  # strongest (smallest alpha) first, not by score


# --------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tests.tiny import tiny_hf_model

    path = tmp_path_factory.mktemp("tiny_llama_learned")
    hf, tok = tiny_hf_model("llama")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_cli_learned_end_to_end_and_resume(tiny_dir, tmp_path, capsys):
    from pasta_lens.cli import build_parser, main
    from pasta_lens.cli.profile_learned import learned_command
    from pasta_lens.models import load_model

    out = tmp_path / "learned.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json,counterfact", "--n", "2", "--method", "learned",
            "--steps", "4", "--sparsity", "0", "--kl-weight", "0", "--lr", "0.5", "--keep-below", "0.999",
            "--init-bias", "0", "--checkpoint-every", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "heads with learned alphas" in capsys.readouterr().out
    profile = HeadProfile.load(out)
    profile.validate_for(load_model(tiny_dir))
    assert profile.method.startswith("learned") and "4 Adam steps" in profile.method
    assert profile.tasks == ("json", "counterfact") and profile.n_examples == {"json": 2, "counterfact": 2}
    assert set(profile.head_alphas) == set(profile.heads) and all(a < 0.999 for a in profile.head_alphas.values())
    assert profile.command == learned_command(build_parser().parse_args(argv))
    again = build_parser().parse_args(profile.command.split()[1:] + ["--quiet"])
    for key in ("steps", "lr", "kl_weight", "sparsity", "alpha_min", "keep_below", "init_bias", "out"):
        assert getattr(again, key) == getattr(build_parser().parse_args(argv), key), key
    files = sorted(p.name for p in (tmp_path / "learned.json.ckpt").iterdir())
    assert files == ["counterfact.ckpt", "json.ckpt", "learned.ckpt"]
    assert {"learning_wall_time_s", "attribution_wall_time_s", "losses"} <= set(profile.provenance)
    # the same command again: every checkpoint is finished, the same profile comes out
    assert main(argv) == 0
    same = HeadProfile.load(out)
    assert same.head_alphas == profile.head_alphas
    # --alpha does not apply to the learned method: refused before the model loads
    assert main(argv + ["--alpha", "0.1"]) == 2
    assert "--alpha-min" in capsys.readouterr().err


def test_cli_learned_schedule_cap_and_end_turn(tiny_dir, tmp_path, capsys):
    from pasta_lens.cli import build_parser, main
    from pasta_lens.plan import spec_schedule as resolve_schedule

    out = tmp_path / "learned.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json,counterfact", "--n", "2", "--method", "learned",
            "--steps", "2", "--sparsity", "0", "--kl-weight", "0", "--lr", "0.5", "--keep-below", "0.999",
            "--init-bias", "0", "--schedule", "first:2", "--gain-cap", "0.5", "--end-turn", "--out", str(out),
            "--quiet"]
    assert main(argv) == 0
    profile = HeadProfile.load(out)
    assert profile.provenance["schedule"] == "first:2" and str(resolve_schedule(profile)) == "first:2"
    assert profile.provenance["learned"]["gain_cap"] == 0.5 and "gain cap 0.5" in profile.method
    assert "--schedule first:2 --gain-cap 0.5" in profile.command and "--end-turn" in profile.command
    again = build_parser().parse_args(profile.command.split()[1:])
    assert (again.schedule, again.gain_cap, again.end_turn) == ("first:2", 0.5, True)
    # the end-turn targets are another objective: their attribution checkpoints are not the plain ones
    assert main([a for a in argv if a != "--end-turn"]) == 2
    assert "different" in capsys.readouterr().err
    assert main(argv[:-3] + ["--schedule", "later", "--out", str(tmp_path / "x.json")]) == 2
    assert "--schedule" in capsys.readouterr().err
    assert main(argv[:-3] + ["--gain-cap", "-1", "--out", str(tmp_path / "x.json")]) == 2
    assert "--gain-cap" in capsys.readouterr().err
    # the closing weight: recorded in the method, the settings and the command; it needs --end-turn
    closed = tmp_path / "closed.json"
    assert main(argv[:-3] + ["--close-weight", "0.5", "--out", str(closed), "--quiet"]) == 0
    profile = HeadProfile.load(closed)
    assert profile.provenance["learned"]["close_weight"] == 0.5 and "closing token weight 0.5" in profile.method
    assert build_parser().parse_args(profile.command.split()[1:]).close_weight == 0.5
    no_end = [a for a in argv[:-3] if a != "--end-turn"]
    assert main(no_end + ["--close-weight", "0.5", "--out", str(tmp_path / "y.json")]) == 2
    assert "--end-turn" in capsys.readouterr().err


def test_cli_learned_init_from_a_stored_attribution_profile(tiny_dir, tmp_path, capsys):
    """--init-from P: the logits start from P's stored attribution tables (no attribution pass), the profile says
    so and its command repeats it; a profile without the tasks' tables, or of another estimator, is refused."""
    from pasta_lens.cli import build_parser, main

    attribution, exact = tmp_path / "attr.json", tmp_path / "exact.json"
    base = ["profile", "--model", tiny_dir, "--tasks", "json,counterfact", "--n", "2", "--k", "5", "--quiet"]
    assert main(base + ["--method", "attribution", "--out", str(attribution)]) == 0
    stored = HeadProfile.load(attribution)
    out = tmp_path / "learned.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json,counterfact", "--n", "2", "--method", "learned",
            "--steps", "1", "--keep-below", "0.999", "--init-from", str(attribution), "--out", str(out), "--quiet"]
    assert main(argv) == 0
    profile = HeadProfile.load(out)
    expected = init_logits({t: torch.tensor(stored.scores[t]) for t in ("json", "counterfact")})
    assert torch.allclose(torch.tensor(profile.provenance["init_logits"]), expected, atol=1e-4)
    assert profile.provenance["init_scores_from"]["profile"] == str(attribution)
    assert profile.provenance["attribution_wall_time_s"] == 0.0
    assert not (tmp_path / "learned.json.ckpt" / "json.ckpt").exists()  # no attribution pass was made
    assert build_parser().parse_args(profile.command.split()[1:]).init_from == str(attribution)
    # a task without a stored table
    assert main([a if a != "json,counterfact" else "json,pronoun" for a in argv[:-3]]
                + ["--out", str(tmp_path / "x.json"), "--quiet"]) == 2
    assert "no score table for ['pronoun']" in capsys.readouterr().err
    # exact scores are not what the initialisation is defined on
    assert main(base + ["--method", "exact", "--out", str(exact)]) == 0
    assert main([a if a != str(attribution) else str(exact) for a in argv[:-3]]
                + ["--out", str(tmp_path / "y.json"), "--quiet"]) == 2
    assert "not attribution scores" in capsys.readouterr().err


@pytest.mark.slow
def test_learned_smollm2_profile_steers_at_its_alphas(smollm2):
    from pathlib import Path

    from pasta_lens import load_profile

    profile = load_profile(str(Path(__file__).resolve().parents[1] / "experiments" / "profiles"
                               / "smollm2-135m-instruct-learned.json"))
    profile.validate_for(smollm2)
    assert profile.method.startswith("learned") and set(profile.head_alphas) == set(profile.heads)
    assert profile.provenance["split"] == "train"
    em = emphasize(smollm2, "Previously, Toko Yasuda played the guitar. *Currently, Toko Yasuda plays the piano.* "
                            "Toko Yasuda plays the")
    with steer(smollm2, profile, em):
        got = _logits(smollm2, em.tokens)
    assert torch.equal(got, _logits(smollm2, em.tokens, pasta_hooks(profile.heads, em, alpha=profile.head_alphas)))


# ------------------------------------------------------------------------- trained for a schedule; gain cap
def _continued(model, text=PROMPT, extra=" Maria nurse JSON"):
    """An emphasis over ``text`` and tokens that continue it (the continuation plays the answer's part)."""
    em = emphasize(model, text)
    more = model.tokenizer(extra, add_special_tokens=False, return_tensors="pt")["input_ids"]
    return em, torch.cat([em.tokens, more.to(em.tokens.device)], dim=1)


@pytest.mark.parametrize("schedule", ["all", "prompt", "first:1", "decay:0.5"])
def test_learned_hooks_steer_the_rows_of_their_schedule(llama, schedule):
    """Under a schedule the differentiable hooks equal pasta_hooks with the same schedule and the same per-head
    alphas, on a prompt followed by answer tokens (so the schedule's answer rows are exercised)."""
    em, tokens = _continued(llama)
    g = torch.linspace(-3, 5, llama.cfg.n_layers * llama.cfg.n_heads).reshape(llama.cfg.n_layers, -1)
    alphas = strengths_to_alphas(g, 0.01)
    per_head = {(l, h): float(alphas[l, h]) for l in range(llama.cfg.n_layers) for h in range(llama.cfg.n_heads)}
    ours = _logits(llama, tokens, learned_hooks(g, 0.01, em.key_mask, schedule))
    ref = _logits(llama, tokens, pasta_hooks(list(per_head), em.key_mask, alpha=per_head, schedule=schedule))
    assert (ours - ref).abs().max() <= 1e-5
    n_prompt = em.tokens.shape[1]
    unsteered = _logits(llama, tokens)
    assert (ours[:, :n_prompt] - unsteered[:, :n_prompt]).abs().max() > 1e-2  # prompt rows steered
    prompt_only = _logits(llama, tokens, learned_hooks(g, 0.01, em.key_mask, "prompt"))
    answer_moved = ours[:, n_prompt:] - prompt_only[:, n_prompt:]
    if schedule == "prompt":
        assert float(answer_moved.abs().max()) == 0.0
    else:  # the answer rows are steered too: different from the prompt-only model there
        assert float(answer_moved.abs().max()) > 1e-3


def test_training_follows_its_schedule_and_the_profile_records_it(strong):
    model, examples = strong
    em, tokens = _continued(model)
    # an objective on the answer positions only: under "prompt" the steered rows reach it through the prompt keys
    direction = torch.randn(model.cfg.d_vocab, generator=torch.Generator().manual_seed(0))

    def objective(logits):
        return logits[:, -3:].float().mean(1) @ direction.to(logits.device)

    objective.key = "test-answer-direction"
    ex = {"a": [ProfilingExample(tokens, em.key_mask, objective, task="a")]}
    init = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    kw = dict(steps=3, lr=0.3, kl_weight=0.0, sparsity=0.0)
    runs = {s: learn(model, ex, init, schedule=s, **kw) for s in ("all", "prompt")}
    assert not torch.equal(runs["all"].g, runs["prompt"].g)  # the schedule reaches the gradient
    assert runs["prompt"].settings["schedule"] == "prompt"
    profile = learned_profile(model, "tiny-llama", runs["prompt"], keep_below=0.999)
    assert profile.provenance["schedule"] == "prompt" and "schedule prompt" in profile.method
    from pasta_lens.plan import spec_schedule as resolve_schedule

    assert str(resolve_schedule(profile)) == "prompt"  # steered with the rows it was trained on
    with pytest.raises(ValueError, match="Bad schedule"):
        learn(model, ex, init, schedule="prompt-only", **kw)


def test_a_checkpoint_of_another_schedule_or_cap_is_refused(strong, tmp_path):
    model, examples = strong
    init = torch.full((model.cfg.n_layers, model.cfg.n_heads), -2.0)
    kw = dict(steps=2, lr=0.2, kl_weight=0.5, sparsity=0.01)
    path = tmp_path / "learned.ckpt"
    learn(model, examples, init, checkpoint=path, schedule="prompt", **kw)
    with pytest.raises(ValueError, match=r"differs in \['schedule'\]"):
        learn(model, examples, init, checkpoint=path, schedule="all", **kw)
    with pytest.raises(ValueError, match=r"differs in \['gain_cap'\]"):
        learn(model, examples, init, checkpoint=path, schedule="prompt", gain_cap=1.0, **kw)


def test_gain_cap_stops_an_example_pulling_once_it_gained_enough(strong):
    """Below the cap the term and its gradient are the uncapped ones; above it the term is base + cap and the
    task gradient is 0 (with kl_weight 0 nothing pulls at all); the reported gain stays the real one."""
    model, examples = strong
    ex = examples["a"][0]
    g = torch.full((model.cfg.n_layers, model.cfg.n_heads), 2.0, requires_grad=True)
    loss, parts = example_loss(model, ex, g, LearnedConfig(kl_weight=0.0))
    (free,) = torch.autograd.grad(loss, [g])
    assert parts["task_gain"] > 0.5 and float(free.abs().max()) > 1e-4
    loss, capped_parts = example_loss(model, ex, g, LearnedConfig(kl_weight=0.0, gain_cap=0.1))
    (capped,) = torch.autograd.grad(loss, [g], allow_unused=True)
    assert capped is None or float(capped.abs().max()) == 0.0
    assert capped_parts["task_gain"] == pytest.approx(parts["task_gain"])  # reported uncapped
    assert capped_parts["term"] == pytest.approx(capped_parts["task"] - capped_parts["task_gain"] + 0.1, abs=1e-4)
    loss, loose = example_loss(model, ex, g, LearnedConfig(kl_weight=0.0, gain_cap=1e6))
    (same,) = torch.autograd.grad(loss, [g])
    assert torch.allclose(same, free)
    with pytest.raises(ValueError, match="gain_cap must be"):
        learn(model, examples, g.detach(), steps=1, gain_cap=0.0)


def test_close_weight_adds_the_closing_tokens_logprob_to_the_task_term(llama):
    """close_weight w: the task term is f / n_answer + w * log P(closing token), steered and unsteered alike (so
    the gain is of the sum); w = 0 or an example without a closing token is the plain term; bad input is refused."""
    ex = get_task("json").profiling_examples(llama, "train", n=1, end_turn=True)[0]
    assert ex.close == ex.tokens.shape[1] - 2
    g = torch.linspace(-3, 3, llama.cfg.n_layers * llama.cfg.n_heads).reshape(llama.cfg.n_layers, -1)
    n_answer = ex.tokens.shape[1] - ex.n_prompt
    with torch.no_grad():
        with llama.hooks(fwd_hooks=learned_hooks(g, 0.01, ex.key_mask, "prompt")):
            steered = llama(ex.tokens)
        plain = llama(ex.tokens)

    def close_lp(logits):  # written out independently of the package's helper
        return float(torch.log_softmax(logits[0, -3].float(), -1)[ex.tokens[0, -2]])

    _, off = example_loss(llama, ex, g, LearnedConfig(kl_weight=0.0, schedule="prompt"))
    _, on = example_loss(llama, ex, g, LearnedConfig(kl_weight=0.0, schedule="prompt", close_weight=2.0))
    assert off["task"] == pytest.approx(float(ex.objective(steered)[0]) / n_answer, abs=1e-4)
    assert on["task"] == pytest.approx(off["task"] + 2.0 * close_lp(steered), abs=1e-4)
    assert on["task_gain"] == pytest.approx(off["task_gain"] + 2.0 * (close_lp(steered) - close_lp(plain)), abs=1e-4)
    unclosed = ProfilingExample(ex.tokens, ex.key_mask, ex.objective, task="json")  # close None
    _, same = example_loss(llama, unclosed, g, LearnedConfig(kl_weight=0.0, schedule="prompt", close_weight=2.0))
    assert same["task"] == pytest.approx(off["task"], abs=1e-6)
    with pytest.raises(ValueError, match="not a target position"):
        ProfilingExample(ex.tokens, ex.key_mask, ex.objective, close=ex.n_prompt - 1)
    with pytest.raises(ValueError, match="end_turn=True"):
        learn(llama, {"json": [unclosed]}, g, steps=1, close_weight=1.0)
    with pytest.raises(ValueError, match="close_weight must be"):
        learn(llama, {"json": [ex]}, g, steps=1, close_weight=-1.0)


def test_close_weight_training_raises_the_closing_token(llama):
    """A few steps with a large closing weight raise the closing token's steered log-prob more than the same steps
    without it (same examples, same init): the term pulls where it should."""
    exs = get_task("json").profiling_examples(llama, "train", n=2, end_turn=True)
    init = torch.zeros(llama.cfg.n_layers, llama.cfg.n_heads)
    kw = dict(steps=6, lr=0.5, kl_weight=0.0, sparsity=0.0, schedule="prompt")

    def close_lp(learned):
        total = 0.0
        for ex in exs:
            with torch.no_grad(), llama.hooks(fwd_hooks=learned_hooks(learned.g, 0.01, ex.key_mask, "prompt")):
                logits = llama(ex.tokens)
            total += float(torch.log_softmax(logits[0, ex.close - 1].float(), -1)[ex.tokens[0, ex.close]])
        return total

    without, with_close = learn(llama, {"json": exs}, init, **kw), learn(
        llama, {"json": exs}, init, close_weight=20.0, **kw)
    assert with_close.settings["close_weight"] == 20.0 and without.settings["close_weight"] == 0.0
    assert close_lp(with_close) > close_lp(without) + 1e-3


# ------------------------------------------------------------------------------------ on top of a base profile
def test_base_heads_are_steered_at_their_fixed_alphas_and_take_no_gradient(llama):
    em, tokens = _continued(llama)
    base = {(1, 2): 0.05, (2, 0): 0.3}
    g = torch.linspace(-3, 3, llama.cfg.n_layers * llama.cfg.n_heads).reshape(llama.cfg.n_layers, -1)
    alphas = strengths_to_alphas(g, 0.01)
    per_head = {(l, h): base.get((l, h), float(alphas[l, h]))
                for l in range(llama.cfg.n_layers) for h in range(llama.cfg.n_heads)}
    ours = _logits(llama, tokens, learned_hooks(g, 0.01, em.key_mask, "prompt", base))
    ref = _logits(llama, tokens, pasta_hooks(list(per_head), em.key_mask, alpha=per_head, schedule="prompt"))
    assert (ours - ref).abs().max() <= 1e-5
    ex = ProfilingExample(tokens, em.key_mask, lambda logits: logits[:, -1, :7].float().sum(-1), task="a")
    g = g.clone().requires_grad_(True)
    loss, _ = example_loss(llama, ex, g, LearnedConfig(kl_weight=1.0, schedule="prompt", base=base))
    (grad,) = torch.autograd.grad(loss, [g])
    assert float(grad[1, 2]) == 0.0 and float(grad[2, 0]) == 0.0 and float(grad.abs().max()) > 1e-6


def test_learning_on_top_of_a_base_keeps_it_and_adds_learned_heads(strong, tmp_path):
    from pasta_lens.profiling import base_alphas

    model, examples = strong
    base = {(0, 1): 0.02, (2, 3): 0.2}
    init = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    kw = dict(steps=4, lr=0.3, kl_weight=0.0, sparsity=0.5)
    learned = learn(model, examples, init, base=base, **kw)
    assert float(learned.g[0, 1]) == 0.0 and float(learned.g[2, 3]) == 0.0  # untouched: no gradient, no penalty
    assert learned.base == base and learned.settings["base"] == [[0, 1, 0.02], [2, 3, 0.2]]
    assert float(learned.alphas[0, 1]) == pytest.approx(0.02) and float(learned.alphas[2, 3]) == pytest.approx(0.2)
    assert not set(learned.kept(0.999)) & set(base)
    profile = learned_profile(model, "tiny-llama", learned, keep_below=0.999)
    assert {h: profile.head_alphas[h] for h in base} == base
    assert set(profile.heads) == set(learned.kept(0.999)) | set(base) and "2 fixed base heads" in profile.method
    # the base is part of the run: a checkpoint of another base is refused
    path = tmp_path / "learned.ckpt"
    learn(model, examples, init, base=base, checkpoint=path, **kw)
    with pytest.raises(ValueError, match=r"differs in \['base'\]"):
        learn(model, examples, init, base={(0, 1): 0.02}, checkpoint=path, **kw)
    with pytest.raises(ValueError, match="outside this model"):
        learn(model, examples, init, base={(9, 0): 0.1}, **kw)
    with pytest.raises(ValueError, match="alpha lies in"):
        learn(model, examples, init, base={(0, 0): 2.0}, **kw)
    # a profile's steering alphas: its own per-head ones, else its alpha
    plain = HeadProfile(model_name="t", n_layers=3, n_heads=4, heads=[(0, 1), (2, 2)], alpha=0.05)
    assert base_alphas(plain) == {(0, 1): 0.05, (2, 2): 0.05}
    assert base_alphas(profile) == profile.head_alphas


def _tiny_base_profile(tmp_path):
    """A saved two-head base profile of the tiny model, steered with schedule prompt: the file to --base-profile."""
    base = HeadProfile(model_name="tiny", n_layers=3, n_heads=4, heads=[(0, 1), (2, 3)], alpha=0.01,
                       tasks=("counterfact",), provenance={"schedule": "prompt"})
    return base.save(tmp_path / "base.json")


def test_cli_learned_on_a_base_profile(tiny_dir, tmp_path, capsys):
    from pasta_lens.cli import main

    path = _tiny_base_profile(tmp_path)
    out = tmp_path / "learned.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json,counterfact", "--n", "2", "--method", "learned",
            "--steps", "2", "--sparsity", "0", "--kl-weight", "0", "--lr", "0.5", "--init-bias", "0",
            "--base-profile", str(path), "--out", str(out), "--quiet"]
    assert main(argv) == 2  # the base is steered with prompt; training with all would fit another model
    assert "--schedule prompt" in capsys.readouterr().err
    assert main(argv + ["--schedule", "prompt"]) == 0
    assert "(2 of them the base profile's)" in capsys.readouterr().out
    profile = HeadProfile.load(out)
    assert profile.head_alphas[(0, 1)] == profile.head_alphas[(2, 3)] == 0.01
    assert profile.provenance["base_profile"]["heads"] == [[0, 1], [2, 3]]
    assert f"--base-profile {path}" in profile.command and profile.provenance["schedule"] == "prompt"
    assert profile.tasks == ("counterfact", "json")  # the base's tasks chose heads too
    assert set(profile.scores) == {"json", "counterfact"}  # the learned run's attribution tables


# ------------------------------------------------------------------- focus, early-close and protect terms
def test_focus_marks_the_occupations_last_mention_in_the_gold_answer(llama):
    """The json and pronoun examples' focus is the fewest answer tokens whose text holds the occupation at its
    last mention; the plain-text tasks have none; a focus outside the target is refused."""
    from pasta_lens.tasks.biographies import occupation_text

    for name in ("json", "pronoun"):
        task = get_task(name)
        for bio, ex in zip(task.examples("train", 3), task.profiling_examples(llama, "train", n=3, end_turn=True)):
            focus = list(ex.focus)
            assert focus == list(range(focus[0], focus[-1] + 1)) and ex.n_prompt <= focus[0] and focus[-1] < ex.close
            word = occupation_text(bio.occupation)
            decode = llama.tokenizer.decode
            assert word in decode(ex.tokens[0, focus[0]:focus[-1] + 1])
            assert word not in decode(ex.tokens[0, focus[0] + 1:focus[-1] + 1])  # minimal at both ends
            assert word not in decode(ex.tokens[0, focus[0]:focus[-1]])
            assert word not in decode(ex.tokens[0, focus[-1] + 1:])  # the last mention
    assert all(ex.focus is None for t in ("biasbios", "counterfact")
               for ex in get_task(t).profiling_examples(llama, "train", n=2))
    ex = get_task("json").profiling_examples(llama, "train", n=1)[0]
    with pytest.raises(ValueError, match="must name one or more target positions"):
        ProfilingExample(ex.tokens, ex.key_mask, ex.objective, focus=(ex.n_prompt - 1,))


def test_focus_and_early_weights_add_their_terms_to_the_task_term(llama):
    """focus_weight w: + w * mean log P(focus tokens); early_weight v: + v * sum log(1 - P(closing token)) over the
    earlier answer positions whose gold token is another; both steered and unsteered (the gain is of the sum).
    Written out here independently of the package's helpers."""
    ex = get_task("json").profiling_examples(llama, "train", n=1, end_turn=True)[0]
    g = torch.linspace(-3, 3, llama.cfg.n_layers * llama.cfg.n_heads).reshape(llama.cfg.n_layers, -1)
    with torch.no_grad():
        with llama.hooks(fwd_hooks=learned_hooks(g, 0.01, ex.key_mask, "prompt")):
            steered = llama(ex.tokens)
        plain = llama(ex.tokens)

    def focus_lp(logits):
        return sum(float(torch.log_softmax(logits[0, i - 1].float(), -1)[ex.tokens[0, i]]) for i in ex.focus) / len(
            ex.focus)

    def early(logits):
        close = int(ex.tokens[0, ex.close])
        total = 0.0
        for i in range(ex.n_prompt, ex.close):
            if int(ex.tokens[0, i]) != close:
                total += math.log1p(-float(torch.softmax(logits[0, i - 1].float(), -1)[close]))
        return total

    _, off = example_loss(llama, ex, g, LearnedConfig(kl_weight=0.0, schedule="prompt"))
    both = LearnedConfig(kl_weight=0.0, schedule="prompt", focus_weight=2.0, early_weight=3.0)
    _, on = example_loss(llama, ex, g, both)
    assert on["task"] == pytest.approx(off["task"] + 2.0 * focus_lp(steered) + 3.0 * early(steered), abs=1e-3)
    assert on["task_gain"] == pytest.approx(
        off["task_gain"] + 2.0 * (focus_lp(steered) - focus_lp(plain)) + 3.0 * (early(steered) - early(plain)),
        abs=1e-3)
    bare = ProfilingExample(ex.tokens, ex.key_mask, ex.objective, task="json")  # no close, no focus
    _, same = example_loss(llama, bare, g, both)
    assert same["task"] == pytest.approx(off["task"], abs=1e-6)
    with pytest.raises(ValueError, match="focus_weight needs examples with focus tokens"):
        learn(llama, {"json": [bare]}, g, steps=1, focus_weight=1.0)
    with pytest.raises(ValueError, match="early_weight needs examples with a closing token"):
        learn(llama, {"json": [bare]}, g, steps=1, early_weight=1.0)
    with pytest.raises(ValueError, match="focus_weight must be"):
        learn(llama, {"json": [ex]}, g, steps=1, focus_weight=float("nan"))


def test_a_new_loss_term_is_a_table_entry_and_a_weight(llama, monkeypatch):
    """The recipe of pasta_lens.profiling.learned.losses for a new term, followed here for a reward and a penalty:
    a weight field (recorded only when set) and one table entry; the loss, the step history, the record, the
    profile's method and provenance pick it up, and a run without it is recorded as before."""
    from dataclasses import dataclass, field

    from pasta_lens.profiling.learned import losses

    @dataclass(frozen=True)
    class Extended(LearnedConfig):
        last_weight: float = field(default=0.0, metadata={"record": "when_set"})
        drift_weight: float = field(default=0.0, metadata={"record": "when_set"})

    def last_logprob(ex, logits):  # log P(the last target token)
        return torch.log_softmax(logits[0, -2].float(), -1)[ex.tokens[0, -1]]

    def drift(ex, steered, plain):  # mean squared change of the last position's logits
        return (steered[0, -1].float() - plain[0, -1].float()).pow(2).mean()

    monkeypatch.setattr(losses, "TASK_TERMS", losses.TASK_TERMS + (losses.TaskTerm(
        "last_weight", last_logprob, "anything", lambda ex: True, "last token weight", "last_weight * log P(last)"),))
    monkeypatch.setattr(losses, "PENALTIES", losses.PENALTIES + (losses.Penalty(
        "drift", "drift_weight", drift, "drift", "mean squared change of the last logits"),))
    assert Extended().record() == LearnedConfig().record()  # off: the fingerprint of earlier runs
    assert Extended(last_weight=2).record()["last_weight"] == 2.0
    with pytest.raises(ValueError, match="drift_weight must be a finite number >= 0"):
        Extended(drift_weight=-1.0)

    ex = get_task("json").profiling_examples(llama, "train", n=1, end_turn=True)[0]
    g = torch.linspace(-3, 3, llama.cfg.n_layers * llama.cfg.n_heads).reshape(llama.cfg.n_layers, -1)
    with torch.no_grad():
        with llama.hooks(fwd_hooks=learned_hooks(g, 0.01, ex.key_mask, "prompt")):
            steered = llama(ex.tokens)
        plain = llama(ex.tokens)
    _, off = example_loss(llama, ex, g, Extended(kl_weight=0.0, schedule="prompt"))
    loss, on = example_loss(llama, ex, g, Extended(kl_weight=0.0, schedule="prompt", last_weight=2.0,
                                                   drift_weight=3.0))
    assert on["task"] == pytest.approx(off["task"] + 2.0 * float(last_logprob(ex, steered)), abs=1e-4)
    assert on["drift"] == pytest.approx(float(drift(ex, steered, plain)), rel=1e-4) and on["drift"] > 0
    assert float(loss.detach()) == pytest.approx(-on["term"] + 3.0 * on["drift"], abs=1e-4)

    config = Extended(steps=1, kl_weight=0.0, sparsity=0.0, schedule="prompt", last_weight=2.0, drift_weight=3.0)
    learned = learn_alphas(llama, {"json": [ex]}, g, config, progress=False)
    assert "drift" in learned.history[0] and learned.settings["last_weight"] == 2.0
    profile = learned_profile(llama, "tiny", learned, keep_below=0.999)
    assert "last token weight 2" in profile.method
    assert profile.provenance["learned"]["drift_term"] == "mean squared change of the last logits"
    assert profile.provenance["learned"]["task_term"].endswith("; plus last_weight * log P(last)")


def test_own_continuations_are_the_unsteered_greedy_tokens_up_to_the_end_of_turn(llama):
    """The KV-cached greedy decode equals a token-by-token argmax loop without cache, cut after the end-of-turn
    marker (the examples' tokens after ``close``), the prompt and key mask unchanged."""
    from pasta_lens.profiling import own_continuations

    exs = get_task("pronoun").profiling_examples(llama, "train", n=3, end_turn=True)
    own = own_continuations(llama, exs, 6)
    for ex, mine in zip(exs, own):
        stop = ex.tokens[0, ex.close + 1:].tolist()
        tokens = ex.tokens[:, :ex.n_prompt]
        with torch.inference_mode():
            for _ in range(6):
                tokens = torch.cat([tokens, llama(tokens)[:, -1:].argmax(-1).cpu()], 1)
                if tokens[0, -len(stop):].tolist() == stop:
                    break
        assert torch.equal(mine.tokens, tokens) and torch.equal(mine.key_mask, ex.key_mask)
        assert mine.close is None and mine.task == "pronoun"
    # the decode stops at the marker: an example whose "marker" is the model's own first greedy token
    ex = exs[0]
    first = int(own_continuations(llama, [ex], 1)[0].tokens[0, -1])
    marked = ProfilingExample(torch.cat([ex.tokens[:, :ex.n_prompt], torch.tensor([[5, first]])], 1), ex.key_mask,
                              ex.objective, close=ex.n_prompt)
    assert own_continuations(llama, [marked], 6)[0].tokens[0, ex.n_prompt:].tolist() == [first]
    # without a marker (close None) nothing is cut: all max_new_tokens greedy tokens, the same as the loop's
    unmarked = ProfilingExample(ex.tokens, ex.key_mask, ex.objective)
    tokens = ex.tokens[:, :ex.n_prompt]
    with torch.inference_mode():
        for _ in range(6):
            tokens = torch.cat([tokens, llama(tokens)[:, -1:].argmax(-1).cpu()], 1)
    assert torch.equal(own_continuations(llama, [unmarked], 6)[0].tokens, tokens)
    assert tokens.shape[1] == ex.n_prompt + 6
    with pytest.raises(ValueError, match="positive integer"):
        own_continuations(llama, exs, 0)


def test_own_continuations_with_a_rewrite_are_the_rewritten_own_answers(llama):
    """``rewrite``: the decoded continuation, rewritten and tokenised again; the end-of-turn marker (when reached)
    stays after it and ``close`` is the rewritten answer's last token; without a marker no ``close``."""
    from pasta_lens.profiling import own_continuations
    from pasta_lens.tasks.base import answer_ids

    exs = get_task("pronoun").profiling_examples(llama, "train", n=2, end_turn=True)
    plain = own_continuations(llama, exs, 5)
    seen = []

    def rewrite(text):
        seen.append(text)
        return "She is a nurse. " + text

    own = own_continuations(llama, exs, 5, rewrite=rewrite)
    for ex, mine, base, text in zip(exs, own, plain, seen):
        assert text == llama.tokenizer.decode(base.tokens[0, ex.n_prompt:])
        assert mine.tokens[0, ex.n_prompt:].tolist() == answer_ids(llama, "She is a nurse. " + text).tolist()
        assert torch.equal(mine.tokens[:, :ex.n_prompt], ex.tokens[:, :ex.n_prompt]) and mine.close is None
        n = mine.tokens.shape[1] - ex.n_prompt
        with torch.inference_mode():
            assert torch.allclose(mine.objective(llama(mine.tokens.to(llama.cfg.device))),
                                  _target_logprob(llama, mine, n), atol=1e-4)
    # a continuation that reaches the marker: the rewrite comes before it, close is its last token
    ex = exs[0]
    first = int(plain[0].tokens[0, ex.n_prompt])
    marked = ProfilingExample(torch.cat([ex.tokens[:, :ex.n_prompt], torch.tensor([[5, first]])], 1), ex.key_mask,
                              ex.objective, close=ex.n_prompt)
    pronoun = get_task("pronoun")
    done = own_continuations(llama, [marked], 6, rewrite=lambda t: pronoun.correct("She is a nurse." + t))[0]
    body = answer_ids(llama, "They are a nurse.").tolist()
    assert done.tokens[0, ex.n_prompt:].tolist() == body + [first]
    assert done.close == ex.n_prompt + len(body) - 1
    empty = own_continuations(llama, [marked], 6, rewrite=lambda t: "")[0]  # the marker alone: nothing closes
    assert empty.tokens[0, ex.n_prompt:].tolist() == [first] and empty.close is None
    with pytest.raises(ValueError, match="left nothing"):
        own_continuations(llama, exs[:1], 5, rewrite=lambda t: "")


def _target_logprob(model, ex, n):
    """Sum of log-probs of the last ``n`` tokens of ``ex`` (the objective of an own continuation), by hand."""
    logp = torch.log_softmax(model(ex.tokens.to(model.cfg.device))[0, -n - 1:-1].float(), -1)
    return logp.gather(-1, ex.tokens[0, -n:, None].to(logp.device)).sum().reshape(1)


def test_the_pronoun_task_corrects_an_answer_and_the_others_refuse():
    pronoun, json_task = get_task("pronoun"), get_task("json")
    assert pronoun.corrects_answers and not json_task.corrects_answers
    assert pronoun.correct("She is a dentist. Her sister says he is his own boss.") == \
        "They are a dentist. Their sister says they are their own boss."
    with pytest.raises(ValueError, match="no rule"):
        json_task.correct("{}")


def test_protect_term_is_the_answer_kl_and_keeps_the_protected_answers(llama, tmp_path):
    """protect_loss is KL(steered || unsteered) over the rows that predict the target (0 when nothing is steered);
    training with it leaves the protected answers' KL lower than the same training without it; it is part of the
    run (recorded, fingerprinted) and an interrupted run with it resumes to the identical result."""

    train = {"json": get_task("json").profiling_examples(llama, "train", n=2, end_turn=True)}
    protect = get_task("pronoun").profiling_examples(llama, "train", n=2, end_turn=True)
    ex = protect[0]
    g = torch.linspace(-3, 3, llama.cfg.n_layers * llama.cfg.n_heads).reshape(llama.cfg.n_layers, -1)
    with torch.no_grad():
        with llama.hooks(fwd_hooks=learned_hooks(g, 0.01, ex.key_mask, "prompt")):
            steered = llama(ex.tokens)
        plain = llama(ex.tokens)
    ls = torch.log_softmax(steered[0, ex.n_prompt - 1:-1].float(), -1)
    lu = torch.log_softmax(plain[0, ex.n_prompt - 1:-1].float(), -1)
    expected = float((ls.exp() * (ls - lu)).sum(-1).mean())
    prompt = LearnedConfig(schedule="prompt")
    assert float(protect_loss(llama, ex, g, prompt).detach()) == pytest.approx(expected, abs=1e-5)
    assert float(protect_loss(llama, ex, torch.full_like(g, -40.0), prompt).detach()) == pytest.approx(0, abs=1e-6)

    init = torch.zeros(llama.cfg.n_layers, llama.cfg.n_heads)
    kw = dict(steps=5, lr=0.5, kl_weight=0.0, sparsity=0.0, schedule="prompt")
    free = learn(llama, train, init, **kw)
    kept = learn(llama, train, init, protect=protect, protect_weight=50.0, **kw)

    def protected_kl(learned):
        return sum(float(protect_loss(llama, e, learned.g, LearnedConfig(schedule="prompt")).detach()) for e in protect)

    assert protected_kl(kept) < protected_kl(free)
    assert kept.settings["protect"] == {"tasks": ["pronoun"], "n": 2, "weight": 50.0}
    assert "kl_protect" in kept.history[0]
    assert free.settings["protect"] is None and "kl_protect" not in free.history[0]
    profile = learned_profile(llama, "tiny", kept, keep_below=0.999)
    assert "KL on 2 protected pronoun answers (weight 50)" in profile.method
    path = tmp_path / "learned.ckpt"
    learn(llama, train, init, protect=protect, protect_weight=50.0, steps=2, checkpoint=path,
          **{k: v for k, v in kw.items() if k != "steps"})
    resumed = learn(llama, train, init, protect=protect, protect_weight=50.0, checkpoint=path, **kw)
    assert torch.equal(resumed.g, kept.g) and resumed.history == kept.history
    with pytest.raises(ValueError, match="protect"):
        learn(llama, train, init, protect=protect[:1], protect_weight=50.0, checkpoint=path, **kw)


def test_protect_each_gives_every_protected_task_its_own_rows(llama):
    """protect_each: per step, ``per_step`` rows of *each* protected task (a pool of two tasks gives ``per_step`` in
    all); the step's protect term is the sum of the tasks' mean KLs; recorded only when set (older runs: pool)."""
    train = {"json": get_task("json").profiling_examples(llama, "train", n=2, end_turn=True)}
    protect = (get_task("pronoun").profiling_examples(llama, "train", n=3, end_turn=True)
               + get_task("counterfact").profiling_examples(llama, "train", n=3))
    pool = LearnedConfig(per_step=2, seed=0)
    each = LearnedConfig(per_step=2, seed=0, protect_each=True)
    for step in range(4):
        (rows,) = protect_rows(protect, step, pool)
        assert len(rows) == 2
        by_task = protect_rows(protect, step, each)
        assert [sorted({protect[i].task for i in r}) for r in by_task] == [["counterfact"], ["pronoun"]]
        assert all(len(r) == 2 for r in by_task)
    seen = {i for step in range(3) for r in protect_rows(protect, step, each) for i in r}
    assert seen == set(range(6))  # an epoch of each task's permutation covers it
    init = torch.linspace(-2, 2, llama.cfg.n_layers * llama.cfg.n_heads).reshape(llama.cfg.n_layers, -1)
    kw = dict(steps=1, lr=0.5, kl_weight=0.0, sparsity=0.0, schedule="prompt", per_step=2)
    learned = learn(llama, train, init, protect=protect, protect_each=True, **kw)
    assert learned.settings["protect"]["each"] is True
    expected = sum(float(protect_loss(llama, protect[i], init, LearnedConfig(schedule="prompt")).detach()) / 2
                   for r in protect_rows(protect, 0, each) for i in r)
    assert learned.history[0]["kl_protect"] == pytest.approx(expected, rel=1e-5)
    assert "2 of each task per step" in learned_profile(llama, "tiny", learned, keep_below=0.999).method
    pooled = learn(llama, train, init, protect=protect, **kw)
    assert "each" not in pooled.settings["protect"]
    assert "of each task" not in learned_profile(llama, "tiny", pooled, keep_below=0.999).method


def test_cli_learned_focus_early_and_protect(tiny_dir, tmp_path, capsys):
    from pasta_lens.cli import build_parser, main

    out = tmp_path / "learned.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json", "--n", "2", "--method", "learned",
            "--steps", "2", "--sparsity", "0", "--kl-weight", "0", "--lr", "0.5", "--keep-below", "0.999",
            "--init-bias", "0", "--schedule", "prompt", "--end-turn", "--out", str(out), "--quiet"]
    extra = ["--focus-weight", "1", "--early-weight", "0.5", "--protect", "pronoun", "--protect-gen", "3"]
    assert main(argv + extra) == 0
    profile = HeadProfile.load(out)
    learned = profile.provenance["learned"]
    assert (learned["focus_weight"], learned["early_weight"]) == (1.0, 0.5)
    assert learned["protect"] == {"tasks": ["pronoun"], "n": 2, "weight": 1.0}
    assert profile.provenance["protect"]["task"] == "pronoun" and "first 3" in profile.provenance["protect"]["targets"]
    assert "focus token weight 1" in profile.method and "early-close weight 0.5" in profile.method
    again = build_parser().parse_args(profile.command.split()[1:])
    assert (again.focus_weight, again.early_weight, again.protect, again.protect_gen) == (1.0, 0.5, "pronoun", 3)
    for bad, match in ((["--protect-gen", "3"], "--protect TASK"),
                       (["--protect", "json"], "also in --tasks"),
                       (["--protect", "jsn"], "not a task"),
                       (["--focus-weight", "-1"], "--focus-weight must be")):
        assert main(argv[:-3] + bad + ["--out", str(tmp_path / "x.json")]) == 2
        assert match in capsys.readouterr().err
    no_end = [a for a in argv[:-3] if a != "--end-turn"]
    assert main(no_end + ["--early-weight", "0.5", "--out", str(tmp_path / "y.json")]) == 2
    assert "--end-turn" in capsys.readouterr().err


def test_protect_against_the_base_keeps_what_the_base_does(llama):
    """reference='base': the KL is to the model steered by the base heads alone (0 when no learned head steers, >0
    against the unsteered model then); own_continuations with the base are that model's greedy tokens; the
    per-task references are checked, recorded and named in the method."""
    from pasta_lens.profiling import own_continuations

    base = {(0, 1): 0.01, (2, 3): 0.05}
    exs = get_task("counterfact").profiling_examples(llama, "train", n=2)
    ex = exs[0]
    g = torch.linspace(-3, 3, llama.cfg.n_layers * llama.cfg.n_heads).reshape(llama.cfg.n_layers, -1)
    off = torch.full_like(g, -math.inf)  # every learned head at alpha 1: the base alone steers
    on_base = LearnedConfig(schedule="prompt", base=base)
    assert float(protect_loss(llama, ex, off, on_base, "base").detach()) == pytest.approx(0, abs=1e-6)
    assert float(protect_loss(llama, ex, off, on_base, "unsteered").detach()) > 1e-4
    with torch.no_grad():
        reference = _logits(llama, ex.tokens, pasta_hooks(list(base), ex.key_mask, alpha=base,
                                                         schedule="prompt"))
        steered = llama.run_with_hooks(ex.tokens, fwd_hooks=learned_hooks(g, 0.01, ex.key_mask, "prompt", base))
    ls = torch.log_softmax(steered[0, ex.n_prompt - 1:-1].float(), -1)
    lr = torch.log_softmax(reference[0, ex.n_prompt - 1:-1].float(), -1)
    expected = float((ls.exp() * (ls - lr)).sum(-1).mean())
    assert float(protect_loss(llama, ex, g, on_base, "base").detach()) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="needs base heads"):
        protect_loss(llama, ex, g, LearnedConfig(schedule="prompt"), "base")

    strong = {(layer, head): 0.01 for layer in range(llama.cfg.n_layers) for head in range(llama.cfg.n_heads)}
    for spec in (base, strong):
        own = own_continuations(llama, exs, 4, spec, "prompt")
        for e, mine in zip(exs, own):
            tokens = e.tokens[:, :e.n_prompt]
            with torch.inference_mode(), steer(llama, list(spec), e.key_mask, alpha=spec, schedule="prompt"):
                for _ in range(4):
                    tokens = torch.cat([tokens, llama(tokens)[:, -1:].argmax(-1).cpu()], 1)
            assert torch.equal(mine.tokens, tokens)
    plain = own_continuations(llama, exs, 4)
    assert any(not torch.equal(a.tokens, b.tokens) for a, b in zip(own, plain))  # the strong base changed them
    own = own_continuations(llama, exs, 4, base, "prompt")

    train = {"json": get_task("json").profiling_examples(llama, "train", n=2, end_turn=True)}
    protect = own_continuations(llama, get_task("pronoun").profiling_examples(llama, "train", n=2, end_turn=True),
                                3) + own
    init = torch.zeros(llama.cfg.n_layers, llama.cfg.n_heads)
    kw = dict(steps=2, lr=0.5, kl_weight=0.0, sparsity=0.0, schedule="prompt", base=base,
              protect=protect)
    references = {"pronoun": "unsteered", "counterfact": "base"}
    learned = learn(llama, train, init, protect_reference=references, **kw)
    assert learned.settings["protect"]["reference"] == references
    assert "against counterfact: base, pronoun: unsteered" in learned_profile(llama, "tiny", learned,
                                                                               keep_below=0.999).method
    unsteered = learn(llama, train, init, **kw)
    assert "reference" not in unsteered.settings["protect"] and not torch.equal(unsteered.g, learned.g)
    for bad, match in (({"pronoun": "base"}, "missing"), ({**references, "json": "base"}, "not protected"),
                       ({"pronoun": "unsteered", "counterfact": "steered"}, "must be one of")):
        with pytest.raises(ValueError, match=match):
            learn(llama, train, init, protect_reference=bad, **kw)
    with pytest.raises(ValueError, match="base="):
        learn(llama, train, init, protect_reference="base", **{**kw, "base": None})


def test_cli_learned_protect_base(tiny_dir, tmp_path, capsys):
    from pasta_lens.cli import build_parser, main

    path = _tiny_base_profile(tmp_path)
    out = tmp_path / "learned.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json", "--n", "2", "--method", "learned",
            "--steps", "2", "--sparsity", "0", "--kl-weight", "0", "--lr", "0.5", "--keep-below", "0.999",
            "--init-bias", "0", "--schedule", "prompt", "--end-turn", "--base-profile", str(path), "--quiet",
            "--protect-gen", "3"]
    assert main(argv + ["--protect", "pronoun", "--protect-base", "counterfact", "--out", str(out)]) == 0
    profile = HeadProfile.load(out)
    learned = profile.provenance["learned"]
    assert learned["protect"] == {"tasks": ["counterfact", "pronoun"], "n": 4, "weight": 1.0,
                                  "reference": {"counterfact": "base", "pronoun": "unsteered"}}
    assert profile.provenance["protect_base"]["task"] == "counterfact"
    assert "base-steered model's own greedy first 3" in profile.provenance["protect_base"]["targets"]
    assert profile.provenance["protect"]["n"] == profile.provenance["protect_base"]["n"] == 2
    again = build_parser().parse_args(profile.command.split()[1:])
    assert (again.protect, again.protect_base, again.protect_gen) == ("pronoun", "counterfact", 3)
    assert not again.protect_each and "each" not in learned["protect"]
    each = tmp_path / "each.json"
    assert main(argv + ["--protect", "pronoun", "--protect-base", "counterfact", "--protect-each",
                        "--out", str(each)]) == 0
    assert HeadProfile.load(each).provenance["learned"]["protect"]["each"] is True
    assert build_parser().parse_args(HeadProfile.load(each).command.split()[1:]).protect_each
    assert main(argv + ["--protect", "pronoun", "--protect-each", "--out", str(tmp_path / "z.json")]) == 2
    assert "--protect-each" in capsys.readouterr().err
    for bad, match in ((["--protect-base", "json"], "also in --tasks"),
                       (["--protect", "counterfact", "--protect-base", "counterfact"], "both name"),
                       (["--protect-base", "pronoun", "--base-profile", ""], "--base-profile")):
        assert main(argv + bad + ["--out", str(tmp_path / "x.json")]) == 2
        assert match in capsys.readouterr().err


def test_cli_learned_own_targets(tiny_dir, tmp_path, capsys):
    """``--own-targets F``: the pronoun task trains on the model's own first F answer tokens, corrected; recorded in
    the provenance and the command; refused without a task that has a rule, without --end-turn, below 0."""
    from pasta_lens.cli import build_parser, main

    out = tmp_path / "learned.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json,pronoun", "--n", "2", "--method", "learned",
            "--steps", "2", "--sparsity", "0", "--kl-weight", "0", "--lr", "0.5", "--keep-below", "0.999",
            "--init-bias", "0", "--schedule", "prompt", "--end-turn", "--quiet"]
    assert main(argv + ["--own-targets", "3", "--out", str(out)]) == 0
    profile = HeadProfile.load(out)
    own = profile.provenance["own_targets"]
    assert own["tokens"] == 3 and list(own["tasks"]) == ["pronoun"] and own["tasks"]["pronoun"]["n"] == 2
    assert build_parser().parse_args(profile.command.split()[1:]).own_targets == 3
    gold = tmp_path / "gold.json"  # the same run on the gold answers learns other strengths
    assert main(argv + ["--out", str(gold)]) == 0
    assert "own_targets" not in HeadProfile.load(gold).provenance and "--own-targets" not in \
        HeadProfile.load(gold).command
    assert HeadProfile.load(gold).provenance["alphas_all"] != profile.provenance["alphas_all"]
    no_end = [a for a in argv if a != "--end-turn"]
    for bad, match in ((argv[:4] + ["json"] + argv[5:] + ["--own-targets", "3"], "none of --tasks"),
                       (no_end + ["--own-targets", "3"], "--end-turn"),
                       (argv + ["--own-targets", "-1"], "--own-targets must be")):
        assert main(bad + ["--out", str(tmp_path / "x.json")]) == 2
        assert match in capsys.readouterr().err


def test_the_protect_cli_profile_records_the_cli_command_of_its_settings():
    """experiments/profiles/smollm2-135m-instruct-protect-cli.json was made by the CLI: its command parses back to
    the settings the profile records (so bench/profile_budget.py's rebuild runs the same recipe)."""
    from pathlib import Path

    from pasta_lens.cli import build_parser

    path = Path(__file__).resolve().parents[1] / "experiments" / "profiles" / "smollm2-135m-instruct-protect-cli.json"
    profile = HeadProfile.load(path)
    args = build_parser().parse_args(profile.command.split()[1:])
    learned = profile.provenance["learned"]
    assert (args.method, args.tasks, args.steps, args.per_step, args.schedule) == ("learned", "json", 80, 2, "prompt")
    assert (args.focus_weight, args.early_weight, args.close_weight) == (
        learned["focus_weight"], learned["early_weight"], learned["close_weight"]) == (1.0, 0.5, 0.5)
    assert (args.protect, args.protect_gen) == ("pronoun", 16) and learned["protect"]["tasks"] == ["pronoun"]
    assert args.base_profile == "smollm2-135m-instruct-metric" and len(profile.heads) == 78
