"""Every steering method on the real SmolLM2-135M-Instruct (Llama, 9 query heads sharing 3 key/value heads)."""

import pytest
import torch

from pasta_lens import emphasize, methods

pytestmark = pytest.mark.slow


def test_every_method_steers_smollm2_and_leaves_no_hook(smollm2):
    em = emphasize(smollm2, "Maria is a nurse in Lisbon. *Answer in JSON.*", chat=True)
    proj = {name: methods.fit(name, smollm2, n=8, min_diff=0.0) for name in ("seka", "prism_delta")}
    assert proj["seka"].key_point == "hook_k" and proj["seka"].tensors["pos"].shape[1:] == (3, 64, 64)
    with torch.inference_mode():
        plain = smollm2(em.tokens)
    for name in methods.available():
        params = {"projections": proj[name]} if name in proj else {}
        steered = methods.run(smollm2, em.tokens, em, name, **params)
        assert torch.isfinite(steered).all(), name
        assert (steered[0, -1] - plain[0, -1]).abs().max() > 1e-2, name
    assert not [hp.name for hp in smollm2.hook_points() if hp._forward_hooks]
