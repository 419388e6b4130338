"""pasta_lens.model_hooks: a user's hooks are found, taken off for a moment and put back exactly as they were."""

import pytest
import torch

from pasta_lens.backends import bridge_class
from pasta_lens.fingerprint import ModelFingerprint
from pasta_lens.model_hooks import HOOK_DICTS, find_user_hook, hooks_disabled, model_modules
from tests.tiny import tiny_hf_model

TOKENS = torch.tensor([[1, 20, 30, 40, 50, 60]])
RESID = "blocks.1.hook_resid_post"


def run(model):
    with torch.inference_mode():
        return model(TOKENS)


def tables(model):
    """Every hook table and hook-point list of the model, as (module, name) -> ordered ids / handles."""
    out = {}
    for name, module in model_modules(model):
        for attr in HOOK_DICTS:
            out[(name, attr)] = list(getattr(module, attr, {}).items())
        for attr in ("fwd_hooks", "bwd_hooks"):
            if isinstance(getattr(module, attr, None), list):
                out[(name, attr)] = list(getattr(module, attr))
    return out


def times(factor):
    def hook(module, args, output):
        return (output[0] * factor,) + output[1:] if isinstance(output, tuple) else output * factor

    return hook


def plus(value):
    def hook(module, args, output):
        return (output[0] + value,) + output[1:] if isinstance(output, tuple) else output + value

    return hook


def test_every_kind_of_user_hook_is_off_inside_and_back_in_order_after(llama):
    plain = run(llama)
    state = tables(llama)
    handles = [llama.ln_final.register_forward_hook(times(2.0)),  # two hooks whose order matters: (x*2)+1
               llama.ln_final.register_forward_hook(plus(1.0)),
               llama.blocks[0].register_forward_pre_hook(lambda module, args: None),
               llama.blocks[1].register_full_backward_hook(lambda module, g_in, g_out: None)]
    try:
        with llama.hooks(fwd_hooks=[(RESID, lambda x, hook: x * 1.5)]):
            edited = run(llama)
            assert not torch.allclose(edited, plain)
            hooked = tables(llama)
            with hooks_disabled(llama):
                assert find_user_hook(llama) is None
                assert torch.equal(run(llama), plain)  # the weights alone
                assert not llama.hook_dict[RESID].fwd_hooks  # the bridge reads these lists: empty too
            assert tables(llama) == hooked  # every table back, in its order
            assert torch.equal(run(llama), edited)
            assert "a TransformerLens hook on blocks.1." in find_user_hook(llama)
        assert "PyTorch hook" in find_user_hook(llama)
    finally:
        for handle in handles:
            handle.remove()
    assert tables(llama) == state and find_user_hook(llama) is None


def test_the_hooks_come_back_when_the_body_raises(llama):
    with llama.hooks(fwd_hooks=[(RESID, lambda x, hook: x * 1.5)]):
        edited = run(llama)
        before = tables(llama)
        with pytest.raises(RuntimeError, match="boom"):
            with hooks_disabled(llama):
                raise RuntimeError("boom")
        assert tables(llama) == before
        assert torch.equal(run(llama), edited)


def test_hooks_added_inside_the_body_stay_after_the_restored_ones(llama):
    first = llama.ln_final.register_forward_hook(times(2.0))
    try:
        with hooks_disabled(llama):
            second = llama.ln_final.register_forward_hook(plus(1.0))
        assert list(llama.ln_final._forward_hooks) == [first.id, second.id]
        second.remove()
    finally:
        first.remove()
    assert not llama.ln_final._forward_hooks


def test_the_libraries_own_hooks_stay_on():
    """Hugging Face installs output-capturing hooks on the first forward that asks for attentions: they are not
    a user's, so neither reported nor taken off. A fresh bridge (they would stay on the shared cached one)."""
    hf, tok = tiny_hf_model("llama")
    llama = bridge_class().boot_transformers("tiny-llama-fresh", hf_model=hf, tokenizer=tok).eval()
    with torch.inference_mode():
        llama.original_model(TOKENS, output_attentions=True, output_hidden_states=True)
    library = {key: value for key, value in tables(llama).items() if value and key[1] in HOOK_DICTS}
    assert library and find_user_hook(llama) is None
    with hooks_disabled(llama):
        assert {key: value for key, value in tables(llama).items() if value and key[1] in HOOK_DICTS} == library


def test_the_fingerprint_ignores_user_hooks_and_leaves_them_on(llama):
    clean = ModelFingerprint.of(llama)
    with llama.hooks(fwd_hooks=[(RESID, lambda x, hook: x * 1.5)]):
        handle = llama.ln_final.register_forward_hook(times(3.0))
        try:
            assert ModelFingerprint.of(llama) == clean
            assert clean.distance(llama) == 0.0
            assert "a TransformerLens hook on blocks.1." in find_user_hook(llama)
        finally:
            handle.remove()
