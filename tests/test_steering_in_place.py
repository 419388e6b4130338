"""The in-place fast path of the steering hooks: same numbers as the copy, and only where nobody can tell.

A steering hook overwrites the steered heads' slices in place (no copy of the layer's pattern) only when it is the
sole hook on its hook point, no autograd graph records the activation, and the activation is fp32
(:func:`pasta_lens.kernels.may_edit_in_place`). Otherwise it returns an edited copy, as before.
"""

import types

import pytest
import torch

from pasta_lens import emphasize, pasta_hooks
from pasta_lens.schedule import Schedule
from pasta_lens.kernels import may_edit_in_place, pattern_layer_hook, scores_layer_hook

PROMPT = "Maria is a nurse who lives in Paris. *Answer in JSON.* Thanks."
HEADS = [(0, 1), (1, 0), (1, 3)]
ALONE = types.SimpleNamespace(fwd_hooks=[object()])
SHARED = types.SimpleNamespace(fwd_hooks=[object(), object()])


@pytest.mark.parametrize("schedule", ["all", "prompt", "first:2", "decay:0.5"])
@pytest.mark.parametrize("n_queries", [12, 1])  # a prefill and one KV-cached decode step (keys 0..11)
def test_pattern_hook_in_place_equals_the_copy_bitwise(schedule, n_queries):
    torch.manual_seed(0)
    key_mask = torch.zeros(2, 9, dtype=torch.bool)
    key_mask[:, 3:5] = True
    pattern = torch.softmax(torch.randn(2, 4, n_queries, 12), dim=-1)
    hook = pattern_layer_hook(0, [1, 3], [0.01, 0.2], key_mask, "exclude", Schedule.parse(schedule))
    copied = hook(pattern.clone(), SHARED)
    target = pattern.clone()
    edited = hook(target, ALONE)
    assert torch.equal(edited, copied)
    if schedule != "decay:0.5":  # full-strength row blocks are edited in place; decay's per-row strengths are not
        assert edited is target
    assert torch.equal(edited[:, [0, 2]], pattern[:, [0, 2]])  # unsteered heads untouched


def test_scores_hook_in_place_equals_the_copy_bitwise():
    torch.manual_seed(0)
    key_mask = torch.zeros(1, 9, dtype=torch.bool)
    key_mask[:, 3:5] = True
    scores = torch.randn(1, 4, 12, 12).masked_fill(torch.ones(12, 12, dtype=torch.bool).triu(1), float("-inf"))
    hook = scores_layer_hook(0, [0, 2], [0.01, 0.3], key_mask, "exclude")
    copied = hook(scores.clone(), SHARED)
    target = scores.clone()
    edited = hook(target, ALONE)
    assert edited is target and torch.equal(edited, copied)


def test_in_place_only_when_nobody_can_see_it():
    x = torch.rand(1, 2, 3, 3)
    assert may_edit_in_place(x, ALONE)
    assert not may_edit_in_place(x, SHARED)  # another hook (a cache, a user's) may hold the unedited tensor
    assert not may_edit_in_place(x, None)  # not called from a hook point
    assert not may_edit_in_place(x.to(torch.bfloat16), ALONE)  # the edit's arithmetic is fp32
    leaf = torch.rand(1, 2, 3, 3, requires_grad=True)
    assert not may_edit_in_place(leaf * 1.0, ALONE)  # autograd records it: softmax's backward needs it
    with torch.no_grad():
        assert may_edit_in_place(leaf * 1.0, ALONE)


@pytest.mark.parametrize("where", ["pattern", "scores"])
def test_model_logits_in_place_equal_the_copy(tiny, where):
    """Under inference_mode the hooks edit in place; with autograd on they copy: the same logits, bitwise."""
    em = emphasize(tiny, PROMPT)
    hooks = pasta_hooks(HEADS, em, 0.01, where=where)
    with torch.inference_mode():
        fast = tiny.run_with_hooks(em.tokens, fwd_hooks=hooks)
    slow = tiny.run_with_hooks(em.tokens, fwd_hooks=hooks)
    assert slow.requires_grad  # the copy path really ran
    assert torch.equal(fast, slow.detach())


def test_a_reference_held_by_an_earlier_hook_stays_unsteered(tiny):
    """A user's hook on the same point that keeps the tensor (no clone) must not see it change afterwards."""
    em = emphasize(tiny, PROMPT)
    kept = {}

    def keep(pattern, hook):
        kept["reference"] = pattern  # a reference, as a careless analysis hook would hold it
        kept["copy"] = pattern.clone()

    with torch.inference_mode():
        tiny.run_with_hooks(em.tokens, fwd_hooks=[("blocks.1.attn.hook_pattern", keep)] + pasta_hooks(HEADS, em, 0.01))
    assert torch.equal(kept["reference"], kept["copy"])
