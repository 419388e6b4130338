"""When the HF twin must refuse, and what it must not refuse: the twin runs only where its tokens are the bridge's.

The twin (:mod:`pasta_lens.hf_engine`) is a stock HF module tree holding the bridge's tensors; it reproduces the
bridge only if the bridge runs stock code on exactly those tensors with no hook of anyone's. Each case below
changes one of those (a parameter added to the bridge, a replaced ``forward``, a module of another class, a hook of
a kind the check once missed) and asserts that ``select_engine`` names it and that ``generate`` gives the hooks'
text. Where the change alters the output, the test also shows that it does (the refusal is not vacuous). Stop at EOS
has one meaning on both engines: ``stop_at_eos=False`` lets greedy decoding pick EOS and go on.
"""

import pytest
import torch
from torch import nn

from pasta_lens import emphasize, generate, steer
from pasta_lens.generation import generate_tokens, select_engine
from pasta_lens.hf_engine import hf_engine_unavailable, hf_generate_tokens
from pasta_lens.plan import plan_from_spec

TEXTS = ["Maria is a nurse who lives in Paris. *Answer in JSON.*", "The capital of *France* is"]
HEADS = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 3)]


class Own:
    """A tiny Llama bridge of the test's own (it may be changed), with handles on HF modules taken before booting."""

    def __init__(self):
        from pasta_lens.backends import bridge_class
        from tests.tiny import tiny_hf_model

        hf, tok = tiny_hf_model("llama")
        self.q_proj = hf.model.layers[0].self_attn.q_proj   # an nn.Linear the bridge calls as it is
        self.mlp = hf.model.layers[1].mlp
        self.lm_head = hf.lm_head
        self.model = bridge_class().boot_transformers("tiny-llama", hf_model=hf, tokenizer=tok)
        self.model.eval()

    def texts(self, engine, **kwargs):
        return generate(self.model, TEXTS, HEADS, max_new_tokens=6, engine=engine, **kwargs)


@pytest.fixture
def own_llama():
    return Own()


def refused(model, needle):
    choice = select_engine(model)
    assert choice.name == "hooks" and choice.twin is None and needle in choice.why, choice.why
    with pytest.raises(ValueError, match="engine='hf' cannot"):
        select_engine(model, "hf")
    return choice.why


# --- stop_at_eos ----------------------------------------------------------------------------------------------

def make_eos_likely(own, plan):
    """Make the greedy continuation of TEXTS pick EOS mid-way: EOS's unembedding row becomes a scaled copy of the
    row of the token the continuation (steered by ``plan``, if any) emits third; EOS then wins wherever that token
    would. Returns the model."""
    model = own.model
    em = emphasize(model, TEXTS)
    with steer(model, plan, em) if plan is not None else torch.inference_mode():
        third = int(generate_tokens(model, em, 3, stop_at_eos=False)[0, 2])
    with torch.no_grad():
        weight = own.lm_head.weight
        weight[model.tokenizer.eos_token_id] = weight[third] * 1.5
    return model


def until_eos(row, eos):
    """The tokens up to and including the first EOS (the engines pad a finished row differently)."""
    row = row.tolist()
    return row[:row.index(eos) + 1] if eos in row else row


@pytest.mark.parametrize("steered", [False, True])
def test_stop_at_eos_false_generates_past_eos_on_both_engines(own_llama, steered):
    plan = plan_from_spec(HEADS) if steered else None
    model = make_eos_likely(own_llama, plan)
    eos = model.tokenizer.eos_token_id
    em = emphasize(model, TEXTS)
    with steer(model, plan, em) if steered else torch.inference_mode():
        hooks = generate_tokens(model, em, 10, stop_at_eos=False)
        stopped = generate_tokens(model, em, 10, stop_at_eos=True)
    row = hooks[0].tolist()
    assert eos in row[:-1], row  # the case at issue: EOS is the greedy choice before the last step
    fast = hf_generate_tokens(model, em, plan, max_new_tokens=10, stop_at_eos=False)
    assert torch.equal(fast, hooks)  # the twin also picks EOS there and goes on, as TransformerLens' loop does
    fast_stopped = hf_generate_tokens(model, em, plan, max_new_tokens=10, stop_at_eos=True)
    for r in range(len(TEXTS)):
        assert until_eos(fast_stopped[r], eos) == until_eos(stopped[r], eos), r
    for stop in (False, True):  # the same through generate(), whose auto engine is the twin here
        assert select_engine(model, generate_kwargs={"stop_at_eos": stop}).name == "hf"
        kwargs = dict(heads=HEADS if steered else None, steered=steered, max_new_tokens=10, stop_at_eos=stop)
        assert generate(model, TEXTS, **kwargs) == generate(model, TEXTS, engine="hooks", **kwargs)


# --- tensors: strict both ways --------------------------------------------------------------------------------

def test_twin_refuses_a_parameter_added_to_the_bridge(own_llama):
    before = own_llama.texts("hooks")
    own_llama.q_proj.bias = nn.Parameter(torch.randn(own_llama.q_proj.out_features) * 3)
    assert own_llama.texts("hooks") != before  # the bridge uses the new bias, so a twin without it would differ
    refused(own_llama.model, "q_proj.bias")
    assert own_llama.texts("auto") == own_llama.texts("hooks")


def test_twin_refuses_a_buffer_added_to_the_bridge(own_llama):
    own_llama.mlp.register_buffer("scale", torch.ones(1))
    refused(own_llama.model, "mlp.scale")


def test_twin_keeps_transformerlens_zero_unembedding_bias(own_llama):
    """The one tensor the bridge adds (b_U on a bias-free lm_head) is carried over, so the twin adds it too."""
    from pasta_lens.hf_engine import hf_twin

    twin, _ = hf_twin(own_llama.model)
    assert twin.lm_head.bias is own_llama.lm_head.bias
    with torch.no_grad():
        own_llama.lm_head.bias += torch.linspace(-3, 3, own_llama.lm_head.bias.shape[0])
    assert select_engine(own_llama.model).name == "hf"
    assert own_llama.texts("auto") == own_llama.texts("hooks")


# --- code: stock forward and stock classes --------------------------------------------------------------------

def test_twin_refuses_a_forward_set_on_an_instance(own_llama):
    q = own_llama.q_proj
    before = own_llama.texts("hooks")
    q.forward = lambda x: nn.functional.linear(x, q.weight) * 3.0
    assert own_llama.texts("hooks") != before
    refused(own_llama.model, "own forward")
    assert own_llama.texts("auto") == own_llama.texts("hooks")


def test_twin_refuses_a_replaced_class_forward(own_llama, monkeypatch):
    cls = type(own_llama.mlp)
    real = cls.forward

    def patched(self, x):
        return real(self, x)

    monkeypatch.setattr(cls, "forward", patched)
    refused(own_llama.model, "forward was replaced")


def test_twin_refuses_a_module_of_another_class(own_llama):
    class Doubled(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2.0

    before = own_llama.texts("hooks")
    own_llama.q_proj.__class__ = Doubled
    assert own_llama.texts("hooks") != before
    refused(own_llama.model, "Doubled")
    assert own_llama.texts("auto") == own_llama.texts("hooks")


def test_twin_refuses_a_parametrized_weight(own_llama):
    from torch.nn.utils import parametrize

    class Scale(nn.Module):
        def forward(self, w):
            return w * 2.0

    parametrize.register_parametrization(own_llama.q_proj, "weight", Scale())
    refused(own_llama.model, "q_proj")
    assert own_llama.texts("auto") == own_llama.texts("hooks")


# --- hooks of every kind ----------------------------------------------------------------------------------------

GLOBAL = ["register_module_forward_hook", "register_module_forward_pre_hook", "register_module_full_backward_hook",
          "register_module_full_backward_pre_hook"]


@pytest.mark.parametrize("register", GLOBAL)
@pytest.mark.parametrize("backend", ["bridge"], indirect=True)
def test_twin_refuses_a_process_wide_module_hook(llama, register):
    from torch.nn.modules import module

    handle = getattr(module, register)(lambda *args: None)
    try:
        refused(llama, "process-wide")
    finally:
        handle.remove()
    assert select_engine(llama).name == "hf"


@pytest.mark.parametrize("register", ["register_full_backward_pre_hook", "register_full_backward_hook",
                                      "register_forward_pre_hook", "register_forward_hook"])
def test_twin_refuses_a_module_hook_of_any_kind(own_llama, register):
    handle = getattr(own_llama.mlp, register)(lambda *args: None)
    try:
        refused(own_llama.model, "PyTorch")
    finally:
        handle.remove()
    assert select_engine(own_llama.model).name == "hf"


def test_the_libraries_own_hooks_do_not_count_as_a_users(own_llama):
    """The bridge wires capture hooks, and HF installs output-capturing hooks on the first forward that asks for
    attentions; neither changes an output, so the twin stays available. On a model of this test's own: HF's hooks
    stay installed for good (the shared tiny models must end every test with the hooks they were built with)."""
    model = own_llama.model
    tokens = emphasize(model, TEXTS[0]).tokens
    with torch.inference_mode():
        model(tokens)
        model.original_model(tokens, output_attentions=True, output_hidden_states=True)
    assert any(m._forward_hooks or m._forward_pre_hooks for m in model.original_model.modules())
    assert hf_engine_unavailable(model) is None


def test_a_twin_that_cannot_generate_is_refused_by_name():
    # hf_generate_tokens checks the twin before it reads anything of the model
    with pytest.raises(ValueError, match="Linear.*cannot generate.*engine='hooks'"):
        hf_generate_tokens(None, None, twin=(nn.Linear(2, 2), {}))
