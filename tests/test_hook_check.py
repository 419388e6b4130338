"""A model PASTA cannot steer is refused with the fix, never steered silently (:mod:`pasta_lens.hook_check`).

Three ways steering can silently do nothing, each made on a fresh tiny model: the hook point fires but its edit is
discarded (TransformerLens' bridge before its PR #1740; GPT-J on today's bridge, a real case), the hook point never
fires, or the model has no ``hook_pattern`` at all (gemma3n before TL's PR #1673). The per-family version of
these checks is the ``guard`` column of ``docs/architectures.md``.
"""

import pytest
import torch

from pasta_lens import emphasize, load_model, pasta_hooks, steer
from pasta_lens.hook_check import MIN_EFFECT, check_steerable, pattern_edit_effects
from tests.architectures import WithoutPatternHook, discard_edits, never_fire
from tests.conftest import require_backend
from tests.families import build_model, family_hf_model

HEADS = {0: [1], 1: [0, 2]}


def test_edits_take_effect_on_the_tiny_models(tiny):
    effects = pattern_edit_effects(tiny)
    assert sorted(effects) == list(range(tiny.cfg.n_layers))
    assert min(effects.values()) > 10 * MIN_EFFECT  # far above the threshold, not near it
    check_steerable(tiny)


@pytest.mark.parametrize("breaks", [discard_edits, never_fire])
def test_an_ignored_layer_is_refused_by_name(breaks, backend):
    model = build_model("llama", backend)
    em = emphasize(model, "Maria is a nurse. *Answer in JSON.*")
    with torch.inference_mode():
        before = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks({1: [0, 1, 2, 3]}, em))
    breaks(model, 1)
    with torch.inference_mode():  # the emulation is real: steering layer 1 now changes nothing
        after = model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks({1: [0, 1, 2, 3]}, em))
        assert torch.equal(after, model(em.tokens)) and not torch.equal(after, before)
    effects = pattern_edit_effects(model)
    assert effects[1] == 0 and effects[0] > MIN_EFFECT and effects[2] > MIN_EFFECT
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.hook_pattern does not change .* layers \[1\].*"
                                         r"backend='hooked'"):
        check_steerable(model)
    check_steerable(model, layers=[0, 2])  # the other layers are fine


def test_a_missing_hook_point_is_refused_before_any_hook_is_added(llama):
    em = emphasize(llama, "Maria is a nurse. *Answer in JSON.*")
    missing = WithoutPatternHook(llama, 1)
    with pytest.raises(ValueError, match=r"no blocks\.1\.attn\.hook_pattern .*eager"):
        with steer(missing, HEADS, em):
            pass
    with pytest.raises(ValueError, match=r"no blocks\.1\.attn\.hook_pattern"):
        pasta_hooks(HEADS, em, model=missing)
    with pytest.raises(ValueError, match=r"no blocks\.1\.attn\.hook_attn_scores"):
        pasta_hooks(HEADS, em, model=_NoScores(llama), where="scores")
    with steer(missing, {0: [1], 2: [0]}, em):  # layers that have it are steered as usual
        pass


class _NoScores:
    """``llama`` without ``blocks.1.attn.hook_attn_scores``."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    @property
    def hook_dict(self):
        return {k: v for k, v in self.model.hook_dict.items() if k != "blocks.1.attn.hook_attn_scores"}


@pytest.fixture(scope="module")
def gptj_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_gptj")
    hf, tok = family_hf_model("gptj")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_load_model_refuses_gptj_on_the_bridge_and_names_the_fix(gptj_dir):
    """GPT-J, the paper's model: TransformerLens' bridge fires hook_pattern after HF's attention has run."""
    with pytest.raises(ValueError, match=r"does not change this model's output.*backend='hooked'"):
        load_model(gptj_dir)
    model = load_model(gptj_dir, check=False)  # loaded on request: and steering it would really do nothing
    em = emphasize(model, "Maria is a nurse. *Answer in JSON.*")
    with torch.inference_mode():
        assert torch.equal(model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks(HEADS, em)), model(em.tokens))


def test_the_fix_it_names_works(gptj_dir):
    require_backend("hooked")
    model = load_model(gptj_dir, backend="hooked")
    em = emphasize(model, "Maria is a nurse. *Answer in JSON.*")
    with torch.inference_mode():
        assert not torch.equal(model.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks(HEADS, em)), model(em.tokens))
