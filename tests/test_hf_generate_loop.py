"""HF's own ``generate`` loop run on the bridged model (``model.original_model.generate``) with PASTA hooks.

After booting, the HF model's attention modules are the bridge's, so HF's loop fires ``hook_pattern`` hooks too.
bench/pastalib_compare.py measures it against TransformerLens' ``generate`` (results/steering_speed.md); these
tests pin that it is a correct alternative: same tokens as TL's loop, cached == uncached, batch == rows alone.
"""

import pytest
import torch

from pasta_lens import emphasize, steer
from pasta_lens.generation import generate_tokens

TEXTS = ["Maria is a nurse who lives in Paris. *Answer in JSON.*", "The capital of *France* is"]
HEADS = [(0, 1), (1, 0), (1, 3)]


def _hf_loop(model, em, n, use_cache=True):
    with torch.inference_mode():
        out = model.original_model.generate(em.tokens, attention_mask=em.attention_mask, max_new_tokens=n,
                                            min_new_tokens=n, do_sample=False, use_cache=use_cache,
                                            pad_token_id=model.tokenizer.pad_token_id)
    return out[:, em.tokens.shape[1]:]


@pytest.mark.parametrize("backend", ["bridge"], indirect=True)  # HF's loop drives the bridge's original_model
def test_hf_loop_fires_hooks_and_matches_tl_generate(llama):
    em = emphasize(llama, TEXTS)
    shapes = []
    record = ("blocks.1.attn.hook_pattern", lambda p, hook: shapes.append(tuple(p.shape)))
    with steer(llama, HEADS, em):
        with llama.hooks(fwd_hooks=[record]):
            cached = _hf_loop(llama, em, 6)
        uncached = _hf_loop(llama, em, 6, use_cache=False)
        tl = generate_tokens(llama, em, 6, stop_at_eos=False)
    n = em.tokens.shape[1]
    assert shapes == [(2, 4, n, n)] + [(2, 4, 1, n + i) for i in range(1, 6)]  # KV cache used, hooks fired
    assert torch.equal(cached, uncached) and torch.equal(cached, tl)
    assert not torch.equal(cached, _hf_loop(llama, em, 6))  # unsteered differs: the hooks did steer


@pytest.mark.parametrize("backend", ["bridge"], indirect=True)
def test_hf_loop_batch_equals_rows_alone(llama):
    em = emphasize(llama, TEXTS)
    with steer(llama, HEADS, em):
        batched = _hf_loop(llama, em, 6)
    for row, text in enumerate(TEXTS):
        single = emphasize(llama, text)
        with steer(llama, HEADS, single):
            assert torch.equal(_hf_loop(llama, single, 6)[0], batched[row]), row
