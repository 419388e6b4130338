"""The official PASTA code (``pastalib==0.1.3``, PyPI, a test extra) as an oracle for pasta-lens.

pastalib edits the attention mask of a plain Hugging Face model (a forward pre-hook on each steered layer's
``self_attn`` adds ``log(alpha)`` to the mask for the steered heads); pasta-lens rescales ``hook_pattern`` on a
TransformerBridge. The bridge swaps the attention modules of the HF model it boots on *in place*, so pastalib
always gets its own, separately built copy of the same weights (as the official README uses it).

Tolerances: max |logit difference| over real (non-padding) positions. The bridge and HF compute the same
attention through different code (the unsteered models already differ by ~1e-6 on the tiny model and ~1e-5 on
SmolLM2), so the bound is 1e-4 on the tiny model and 2e-4 on SmolLM2, while steering itself moves the logits
by more than 0.1 (asserted, so a no-op on either side fails).

By design the two differ for several spans: pastalib adds ``log(alpha)`` once *per span* a key lies outside
(stacked penalties: a key outside two spans gets ``2 log(alpha)``); pasta-lens takes the union of the spans (a key
is emphasised if it is in any span; every other prompt key gets ``log(alpha)`` once).
"""

from __future__ import annotations

import math

import pytest
import torch
from pastalib.pasta import PASTA

from pasta_lens import emphasize, pasta_hooks
from tests.tiny import tiny_hf_model

PROMPTS = ["Maria is a nurse who lives in Paris. Answer in JSON format with the name.",
           "The capital of France is Paris. Previously, the Eiffel Tower was in Rome."]
SPANS = ["Answer in JSON format", "the Eiffel Tower was in Rome"]
TINY_HEADS = {0: [1], 1: [0, 3], 2: [2]}


def _pastalib_logits(hf, tok, texts, sections, heads, alpha, scale_position="exclude"):
    """Logits of pastalib steering ``hf``; ``sections`` is a list of spans per row (one entry = one span)."""
    pasta = PASTA(model=hf, tokenizer=tok, head_config=heads, alpha=alpha, scale_position=scale_position)
    inputs, offsets = pasta.inputs_from_batch(texts)
    with torch.inference_mode(), pasta.apply_steering(model=hf, strings=texts, substrings=sections,
                                                      model_input=inputs, offsets_mapping=offsets) as steered:
        logits = steered(**inputs).logits
    return logits, inputs, (pasta, offsets)


def _pastalib_token_mask(pastalib, texts, spans, inputs):
    """pastalib's own token ranges for the spans, as a bool key mask in padded coordinates."""
    pasta, offsets = pastalib
    ranges = pasta.token_ranges_from_batch(texts, spans, offsets)
    mask = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
    for row, (start, end) in enumerate(ranges.tolist()):
        mask[row, start:end] = True
    return mask


def _pasta_lens_logits(model, tokens, key_mask, heads, alpha, scale_position="exclude", attention_mask=None):
    with torch.inference_mode():
        steered = model.run_with_hooks(tokens, attention_mask=attention_mask,
                                       fwd_hooks=pasta_hooks(heads, key_mask, alpha, scale_position))
        plain = model(tokens, attention_mask=attention_mask)
    return steered, plain


def _check_parity(pair, texts, spans, heads, alpha, tol, scale_position="exclude", same_spans=True):
    model, hf, tok = pair
    em = emphasize(model, texts, substrings=[[s] for s in spans], prepend_bos=False)
    theirs, inputs, pastalib = _pastalib_logits(hf, tok, texts, spans, heads, alpha, scale_position)
    # Same tokens and padding; steering on pastalib's own token ranges, so this compares steering, not span
    # finding. Where the span starts inside a token (after its leading space) both find the same tokens
    # (same_spans); where it starts on a token boundary pastalib takes one token more (see the boundary test).
    assert torch.equal(em.tokens, inputs["input_ids"]) and torch.equal(em.attention_mask, inputs["attention_mask"])
    their_mask = _pastalib_token_mask(pastalib, texts, spans, inputs)
    if same_spans:
        assert torch.equal(em.key_mask, their_mask)
    ours, plain = _pasta_lens_logits(model, em.tokens, their_mask, heads, alpha, scale_position,
                                     em.attention_mask)
    real = em.attention_mask.bool()
    diff = (ours - theirs).abs()[real].max().item()
    assert diff <= tol, diff
    assert (ours - plain).abs()[real].max().item() > 0.1  # steering did something on both sides
    return diff


@pytest.fixture
def tiny_pair(llama):
    """(bridge, a separate plain HF copy with the same weights, its plain HF tokenizer) for pastalib.

    The bridge's own tokenizer prepends BOS; the plain one (what pastalib's README passes) does not, so
    pasta-lens uses ``prepend_bos=False`` to see the same tokens.
    """
    hf, tok = tiny_hf_model("llama")
    return llama, hf, tok


@pytest.mark.parametrize("scale_position", ["exclude", "include"])
def test_tiny_single_prompt_matches_pastalib(tiny_pair, scale_position):
    _check_parity(tiny_pair, PROMPTS[:1], SPANS[:1], TINY_HEADS, 0.01, 1e-4, scale_position)


def test_tiny_left_padded_batch_matches_pastalib(tiny_pair):
    texts = [PROMPTS[0], "Paris. Answer in JSON."]  # different lengths: row 1 is left-padded
    em = emphasize(tiny_pair[0], texts, substrings=[["JSON format"], ["Answer in JSON"]], prepend_bos=False)
    assert not bool(em.attention_mask.all())
    # The tiny BPE tokenizer often splits the space off ("in", " ", "JSON"): spans then start on a token
    # boundary and pastalib's ranges take that space token too (same_spans=False).
    _check_parity(tiny_pair, texts, ["JSON format", "Answer in JSON"], TINY_HEADS, 0.01, 1e-4, same_spans=False)


def test_span_starting_on_a_token_boundary_differs_by_one_token(tiny_pair):
    """pastalib's find_token_range also takes the token that *ends* where the span starts (it shares no
    character with the span); pasta-lens emphasises only tokens overlapping the span. Steering on the same key
    set still agrees."""
    model, hf, tok = tiny_pair
    text, span = "Paris. Answer in JSON.", "JSON"
    em = emphasize(model, text, substrings=[span], prepend_bos=False)
    theirs, inputs, pastalib = _pastalib_logits(hf, tok, [text], [span], TINY_HEADS, 0.01)
    their_mask = _pastalib_token_mask(pastalib, [text], [span], inputs)
    offsets = pastalib[1][0].tolist()
    extra = (their_mask & ~em.key_mask)[0].nonzero().flatten().tolist()
    assert len(extra) == 1 and bool((em.key_mask & ~their_mask).sum() == 0)
    start = text.index(span)
    assert offsets[extra[0]][1] == start  # the extra token ends exactly where the span begins
    ours, _ = _pasta_lens_logits(model, inputs["input_ids"], their_mask, TINY_HEADS, 0.01)
    assert (ours - theirs).abs().max().item() <= 1e-4


def _stacked_reference_hooks(heads, masks, alpha):
    """Additive reference with pastalib's multi-span rule: log(alpha) once per span a prompt key lies outside."""
    n_outside = sum((~m).to(torch.float32) for m in masks)  # [batch, pos]

    def make(hs):
        def hook(scores, hook):
            scores = scores.clone()
            bias = torch.zeros(n_outside.shape[0], scores.shape[-1], dtype=scores.dtype)
            bias[:, :n_outside.shape[1]] = n_outside * math.log(alpha)
            scores[:, hs] += bias[:, None, None, :]
            return scores
        return hook

    return [(f"blocks.{layer}.attn.hook_attn_scores", make(hs)) for layer, hs in sorted(heads.items())]


def _two_span_logits(pair, text, first, second, extra_tokens=0):
    """(pastalib, pasta-lens, stacked reference) logits over ``text`` plus ``extra_tokens`` continuation tokens
    (keys after the prompt, as during generation: neither side rescales them)."""
    model, hf, tok = pair
    em = emphasize(model, text, substrings=[first, second], prepend_bos=False)
    pasta = PASTA(model=hf, tokenizer=tok, head_config=TINY_HEADS, alpha=0.01)
    inputs, offsets = pasta.inputs_from_batch([text])  # sets pastalib's prompt length (input_len)
    # Each span's keys as pastalib finds them (so only the combination rule is compared, not span finding).
    one, two = (_pastalib_token_mask((pasta, offsets), [text], [span], inputs) for span in (first, second))
    assert torch.equal(em.tokens, inputs["input_ids"])
    tokens = torch.cat([em.tokens, torch.arange(40, 40 + extra_tokens)[None]], dim=1)
    with torch.inference_mode():
        with pasta.apply_steering(model=hf, strings=[text], substrings=[[first], [second]], model_input=inputs,
                                  offsets_mapping=offsets) as steered:
            theirs = steered(tokens).logits
        ours = model.run_with_hooks(tokens, fwd_hooks=pasta_hooks(TINY_HEADS, one | two, 0.01))
        stacked = model.run_with_hooks(tokens, fwd_hooks=_stacked_reference_hooks(TINY_HEADS, [one, two], 0.01))
    return theirs, ours, stacked, em.tokens.shape[1]


def test_two_disjoint_spans_stack_in_pastalib_but_not_in_pasta_lens(tiny_pair):
    """Two disjoint spans: pastalib's per-span penalties sum to the union's plus one log(alpha) on *every* prompt
    key. Over the prompt that uniform shift cancels in the softmax (logits agree); once keys after the prompt
    exist (generation), pastalib pushes attention from the whole prompt to the generated tokens."""
    theirs, ours, stacked, n = _two_span_logits(tiny_pair, PROMPTS[1], "The capital of France",
                                                "the Eiffel Tower", extra_tokens=6)
    assert (theirs - stacked).abs().max().item() <= 1e-4  # pastalib is the stacked rule
    assert (ours - theirs)[:, :n].abs().max().item() <= 1e-4  # same over the prompt
    assert (ours - theirs)[:, n:].abs().max().item() > 0.1  # different once generated keys exist


def test_overlapping_spans_differ_already_over_the_prompt(tiny_pair):
    theirs, ours, stacked, _ = _two_span_logits(tiny_pair, PROMPTS[1], "the Eiffel Tower",
                                                "Eiffel Tower was in Rome")
    assert (theirs - stacked).abs().max().item() <= 1e-4
    assert (ours - theirs).abs().max().item() > 0.1


def test_include_agrees_over_the_prompt_but_not_on_generated_keys(tiny_pair):
    """scale_position="include": pastalib adds log(alpha) to the span and then subtracts it from *every* prompt
    key (span weight 1, other prompt keys 1/alpha); pasta-lens gives the span alpha and the rest 1. Same ratios
    within the prompt, so the prompt's logits agree; generated keys (weight 1 on both sides) differ in relative
    weight, so generation differs."""
    model, hf, tok = tiny_pair
    text, span = PROMPTS[0], "Answer in JSON format"
    em = emphasize(model, text, substrings=[span], prepend_bos=False)
    pasta = PASTA(model=hf, tokenizer=tok, head_config=TINY_HEADS, alpha=0.01, scale_position="include")
    inputs, offsets = pasta.inputs_from_batch([text])
    mask = _pastalib_token_mask((pasta, offsets), [text], [span], inputs)
    tokens = torch.cat([em.tokens, torch.arange(40, 46)[None]], dim=1)
    with torch.inference_mode():
        with pasta.apply_steering(model=hf, strings=[text], substrings=[span], model_input=inputs,
                                  offsets_mapping=offsets) as steered:
            theirs = steered(tokens).logits
        ours = model.run_with_hooks(tokens, fwd_hooks=pasta_hooks(TINY_HEADS, mask, 0.01, "include"))
    n = em.tokens.shape[1]
    assert (ours - theirs)[:, :n].abs().max().item() <= 1e-4
    assert (ours - theirs)[:, n:].abs().max().item() > 0.1


# --- the real model ---------------------------------------------------------------------------------------

SMOL_HEADS = {5: [2], 20: [0, 3], 21: [5], 25: [8]}


@pytest.fixture(scope="module")
def smol_pair(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pasta_lens.models import offline_gguf_path

    directory, gguf_file = offline_gguf_path("smollm2-135m-instruct")
    hf = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32,
                                              attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    return smollm2, hf, tok


@pytest.mark.slow
def test_smollm2_single_prompt_matches_pastalib(smol_pair):
    _check_parity(smol_pair, PROMPTS[:1], SPANS[:1], SMOL_HEADS, 0.01, 2e-4)


@pytest.mark.slow
def test_smollm2_left_padded_batch_matches_pastalib(smol_pair):
    texts = [PROMPTS[1], "Paris. Answer in JSON format."]
    _check_parity(smol_pair, texts, ["the Eiffel Tower was in Rome", "Answer in JSON format"], SMOL_HEADS,
                  0.01, 2e-4)


# --- CounterFact ES / PS as the official code computes them ----------------------------------------------------
#
# The official evaluation (QingruZhang/PASTA, installed with pastalib as the top-level package `evaluation`)
# computes CounterFact efficacy in `evaluation/benchmarks.py::counterfact_evaluate` / `counterfact_efficacy`: one
# greedy step (`generate(max_new_tokens=1, output_scores=True)`) on the left-padded prompts, steered by pastalib's
# `apply_steering` on the emphasised substring, `log_softmax(scores[0])` read at each object's first token
# (`precompute.first_token_ids_from_batch`, with the leading space for "gpt" models' byte-level BPE), then
# `evaluation.metrics.efficacy` (exp, `>`, mean per case, mean over cases); `counterfact_paraphrase` runs the same on
# every paraphrase prompt of a case and `efficacy` averages them per case. `benchmarks` and `precompute` import
# `baukit`, which is not on PyPI, so those steps are ported below line for line (benchmarks.py, counterfact_evaluate:
# the `generate_kwargs`, `first_token_logps`, `target_probs` lines); `efficacy` itself is the official function.

def _official_first_token_scores(hf, tok, prompts, attributes, targets, heads, alpha):
    """counterfact_evaluate's steps: (log p of each target's first token) per prompt, steered if ``heads``."""
    from pastalib.utils.tokenizer_utils import set_padding_side

    with set_padding_side(tok, padding_side="left"):
        inputs = tok(prompts, return_tensors="pt", truncation=True, padding="longest", return_offsets_mapping=True)
    offsets = inputs.pop("offset_mapping")
    generate_kwargs = dict(do_sample=False, return_dict_in_generate=True, output_scores=True, max_new_tokens=1,
                           pad_token_id=tok.eos_token_id)
    with torch.inference_mode():
        if heads:
            steerer = PASTA(model=hf, tokenizer=tok, head_config=heads, alpha=alpha)
            with steerer.apply_steering(model=hf, strings=prompts, substrings=attributes, model_input=inputs,
                                        offsets_mapping=offsets) as steered:
                outputs = steered.generate(**inputs, **generate_kwargs)
        else:
            outputs = hf.generate(**inputs, **generate_kwargs)
    first_token_logps = torch.log_softmax(outputs.scores[0], dim=-1)
    add_space = "gpt" in hf.name_or_path  # first_token_ids_from_batch's target_token_first_space
    out = []
    for target_words in targets:
        ids = tok([(" " if add_space else "") + w for w in target_words], add_special_tokens=False).input_ids
        target_id = torch.tensor([i[0] for i in ids])
        out.append(first_token_logps[torch.arange(len(prompts)), target_id].tolist())
    return out


def _check_same_keys(model, task, ex, keys, prompts, attributes, hf, tok):
    """pastalib's token range of each attribute is the harness's emphasised key set (so steering is compared on
    one key set; the span-finding rules differ and are pinned above)."""
    from pasta_lens.tasks.base import emphasis_of

    pasta = PASTA(model=hf, tokenizer=tok, head_config=TINY_HEADS, alpha=0.01)
    for key, query, prompt, attribute in zip(keys, task.queries(ex), prompts, attributes):
        assert query.key == key
        em = emphasis_of(model, [task.render(model, query.markup)])
        inputs, offsets = pasta.inputs_from_batch([prompt])
        (start, end), = pasta.token_ranges_from_batch([prompt], [attribute], offsets).tolist()
        assert torch.equal(em.tokens, inputs["input_ids"])
        assert em.key_mask[0].nonzero().flatten().tolist() == list(range(start, end))


@pytest.fixture(scope="module")
def cf_oracle_task(tmp_path_factory):
    import shutil
    from pathlib import Path

    from pasta_lens.tasks import CounterFactTask

    fixtures = Path(__file__).parent / "fixtures"
    root = tmp_path_factory.mktemp("cf_oracle")
    (root / "counterfact").mkdir()
    shutil.copy(fixtures / "counterfact_rome.json", root / "counterfact" / "rome_format.json")
    for split in ("train", "test"):
        shutil.copy(fixtures / "counterfact_split.json", root / "counterfact" / f"{split}.json")
    return CounterFactTask(data_dir=root)


@pytest.fixture(scope="module")
def gpt_named_hf(tmp_path_factory):
    """The tiny Llama's weights as a plain HF model saved under a name with "gpt" in it: the official code adds the
    leading space to the objects (as pasta-lens does) only for such names; this tokenizer is byte-level BPE."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf, tok = tiny_hf_model("llama")
    path = tmp_path_factory.mktemp("models") / "tiny-gpt-style-bpe"
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval(), AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("steered", [False, True])
def test_counterfact_es_ps_equal_the_official_evaluation(llama, cf_oracle_task, gpt_named_hf, steered):
    """The harness's CounterFact ES / PS (first-token probabilities) equal the official evaluation's on the same
    prompts, unsteered and steered (pastalib on a plain HF copy, pasta-lens on the bridge): per-prompt first-token
    log-probs within 1e-4, the same ES / PS per case and the same means from `evaluation.metrics.efficacy`."""
    from evaluation.metrics import efficacy

    from pasta_lens.evaluation import evaluate

    hf, tok = gpt_named_hf
    task = cf_oracle_task
    heads = [(layer, h) for layer, hs in TINY_HEADS.items() for h in hs]
    res = evaluate(llama, [task], ["pasta" if steered else "zero-shot"], n=3, heads=heads, alpha=0.01,
                   max_new_tokens=2, progress=False)
    examples = task.examples("test", 3)
    rows = {r["uid"]: r for r in res.rows}
    ours_es, theirs_es, ours_ps, theirs_ps = [], [], [], []
    for ex in examples:
        row = rows[ex.uid]
        keys = ["es"] + sorted(k for k in row["prompts"] if k.startswith("ps"))
        # the bridge prepends BOS to these plain prompts; the official code's tokenizer does not, so it gets BOS
        # written out (a special token, parsed as one id). pastalib also takes the token that ends where a span
        # starts (a lone space token here: test_span_starting_on_a_token_boundary_differs_by_one_token), so it is
        # given the span without its first character, which selects exactly the harness's key set (checked below).
        prompts = [tok.bos_token + row["prompts"][k] for k in keys]
        attributes = [f"{ex.prompt} {ex.target_new}"[1:]] * len(keys)
        _check_same_keys(llama, task, ex, keys, prompts, attributes, hf, tok)
        new, old = _official_first_token_scores(hf, tok, prompts, attributes,
                                                [[ex.target_new] * len(keys), [ex.target_true] * len(keys)],
                                                TINY_HEADS if steered else None, 0.01)
        mine_new = [row["outputs"][f"{k}.tokens"][0][0] for k in keys]
        mine_old = [row["outputs"][f"{k}.tokens"][1][0] for k in keys]
        assert max(abs(a - b) for a, b in zip(new + old, mine_new + mine_old)) <= 1e-4
        theirs_es.append(([new[0]], [old[0]]))
        ours_es.append(row["metrics"]["es"])
        theirs_ps.append((new[1:], old[1:]))
        ours_ps.append(row["metrics"]["ps"])
    es = efficacy([t for t, _ in theirs_es], [c for _, c in theirs_es])
    ps = efficacy([t for t, _ in theirs_ps], [c for _, c in theirs_ps])
    assert list(es.score.values) == ours_es and list(ps.score.values) == pytest.approx(ours_ps, abs=1e-12)
    summary = res.summary["tasks"]["counterfact"]["pasta" if steered else "zero-shot"]
    assert summary["es"] == pytest.approx(es.score.mean) and summary["ps"] == pytest.approx(ps.score.mean)
