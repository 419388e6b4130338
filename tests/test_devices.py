"""Models split over devices and hooks that follow each pattern's device (what can be checked without a GPU).

No accelerator is available to these tests. What they pin down instead: (1) every steering hook builds its
tensors on the device of the pattern it is handed, at call time, never from a tensor cached on an earlier call
(checked by alternating patterns on ``meta``, a different device type, and on ``cpu``); (2) ``load_model``'s
``device_map`` reaches TransformerLens' dispatcher: a CPU + disk-offload map (layers whose weights are not
resident, materialised per call by accelerate) steers bit-identically to the model on one device.
Multi-GPU maps (``n_devices``, ``device_map="auto"`` over GPUs) take the same code path in TL but were not run.
"""

import pytest
import torch

from pasta_lens import emphasize, load_model, pasta_hooks
from pasta_lens.profiling.estimators import copy_hooks, pasta_delta


@pytest.fixture
def em(llama):
    return emphasize(llama, "Maria is a nurse. *Answer in JSON.*")


def _rescaled(pattern, key_mask, heads, alpha):
    """Ground truth by hand: rows of the steered heads times w (alpha off the span), renormalised."""
    w = torch.where(key_mask[0], 1.0, alpha)
    out = pattern.clone()
    for h in heads:
        row = pattern[:, h] * w
        out[:, h] = row / row.sum(-1, keepdim=True)
    return out


def test_steering_hook_follows_the_pattern_device_on_every_call(em):
    (_, hook), = pasta_hooks({1: [0, 2]}, em, alpha=0.1)
    k = em.tokens.shape[1]
    cpu = torch.rand(2, 4, k, k).softmax(-1)
    for device in ("meta", "cpu", "meta", "cpu"):  # a tensor cached on the first call would break the second
        pattern = cpu if device == "cpu" else torch.empty(2, 4, k, k, device="meta")
        out = hook(pattern, None)
        assert out.device.type == device and out.shape == pattern.shape
        if device == "cpu":
            torch.testing.assert_close(out, _rescaled(cpu, em.key_mask, [0, 2], 0.1))


def test_profiling_hooks_follow_the_pattern_device(em):
    k = em.tokens.shape[1]
    meta = torch.empty(3, 4, k, k, device="meta")
    (_, hook), = copy_hooks([None, (1, 0), (1, 3)], em.key_mask, 0.1)
    assert hook(meta, None).device.type == "meta"
    assert pasta_delta(meta, em.key_mask, 0.1).device.type == "meta"
    cpu = torch.rand(3, 4, k, k).softmax(-1)
    out = hook(cpu, None)
    torch.testing.assert_close(out[1], _rescaled(cpu[1:2], em.key_mask, [0], 0.1)[0])
    torch.testing.assert_close(out[2], _rescaled(cpu[2:3], em.key_mask, [3], 0.1)[0])
    assert torch.equal(out[0], cpu[0])


def test_a_disk_offloaded_split_steers_like_one_device(tiny_dir):
    from importlib.metadata import version

    whole = load_model(tiny_dir)
    split_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
                 "model.layers.1": "disk", "model.layers.2": "disk", "model.norm": "cpu", "lm_head": "cpu"}
    if int(version("transformer-lens").split(".")[0]) < 4:  # measured: TL 3.9's bridge refuses disk offload
        with pytest.raises(ValueError, match="'disk' is not supported"):
            load_model(tiny_dir, device_map=split_map)
        return
    split = load_model(tiny_dir, device_map=split_map)
    assert split.cfg.n_devices == 2 and any(p.device.type == "meta" for p in split.parameters())  # not resident
    em = emphasize(whole, "Maria is a nurse. *Answer in JSON.*")
    hooks = pasta_hooks({1: [0, 2], 2: [1]}, em, alpha=0.01)
    with torch.inference_mode():
        steered, plain = whole.run_with_hooks(em.tokens, fwd_hooks=hooks), whole(em.tokens)
        assert torch.equal(split.run_with_hooks(em.tokens, fwd_hooks=hooks), steered)
    assert (steered - plain).abs().max() > 1e-2  # the steering did something


def test_placement_arguments_are_checked_and_passed_through(tiny_dir):
    with pytest.raises(ValueError, match="not both"):
        load_model(tiny_dir, device="cpu", device_map="auto")
    with pytest.raises(ValueError, match="max_memory"):
        load_model(tiny_dir, max_memory={0: "1GiB"})
    if not torch.cuda.is_available():  # TL's own check: proof that n_devices reaches the bridge
        with pytest.raises(ValueError, match="n_devices=2 requires CUDA"):
            load_model(tiny_dir, n_devices=2)
