"""Emphasis parsing and tokenisation: markup, substrings, char ranges, chat templates, batches, errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pasta_lens import emphasize, parse_markup
from pasta_lens.spans import find_substrings, merge_spans


def marked_tokens(tok, em, row=0):
    """Decoded text of the emphasised tokens of one row."""
    return tok.decode(em.tokens[row, em.key_mask[row]].tolist())


# --- parse_markup ---------------------------------------------------------------------------------------

def test_parse_single_span():
    assert parse_markup("Maria is a nurse. *Answer in JSON.*") == (
        "Maria is a nurse. Answer in JSON.", ((18, 33),))


def test_parse_several_spans_and_custom_markers():
    clean, spans = parse_markup("a <em>bc</em> d <em>e</em>", ("<em>", "</em>"))
    assert clean == "a bc d e"
    assert [clean[s:e] for s, e in spans] == ["bc", "e"]
    clean, spans = parse_markup("x **bold** y", "**")
    assert [clean[s:e] for s, e in spans] == ["bold"]


def test_parse_escapes():
    clean, spans = parse_markup(r"2 \* 3 = *six* \\ done")
    assert clean == "2 * 3 = six \\ done"
    assert [clean[s:e] for s, e in spans] == ["six"]
    clean, spans = parse_markup(r"a \<em> <em>b</em>", ("<em>", "</em>"))
    assert clean == "a <em> b" and [clean[s:e] for s, e in spans] == ["b"]


@pytest.mark.parametrize("text,markers,match", [
    ("a *b", "*", "never closed"),
    ("a ** b", "*", "Empty emphasis"),
    ("a </em> b", ("<em>", "</em>"), "no opening"),
    ("a <em>b", ("<em>", "</em>"), "never closed"),
    ("a *b*", ("", "*"), "non-empty"),
])
def test_parse_errors(text, markers, match):
    with pytest.raises(ValueError, match=match):
        parse_markup(text, markers)


def test_substrings_and_occurrences():
    text = "the cat and the dog and the end"
    assert find_substrings(text, ["cat"]) == ((4, 7),)
    assert find_substrings(text, [("the", 2)]) == ((12, 15),)
    with pytest.raises(ValueError, match="not found"):
        find_substrings(text, [("the", 4)])
    with pytest.raises(ValueError, match="not found"):
        find_substrings(text, ["bird"])
    with pytest.raises(ValueError, match="empty"):
        find_substrings(text, [""])


def test_merge_spans_is_a_union():
    assert merge_spans([(5, 9), (0, 2), (1, 3), (9, 10)]) == ((0, 3), (5, 10))


# --- emphasize ------------------------------------------------------------------------------------------

def test_tokens_match_to_tokens_and_mask_marks_span(llama, tok):
    em = emphasize(llama, "Maria is a nurse. *Answer in JSON.*")
    assert em.text == "Maria is a nurse. Answer in JSON."
    assert torch.equal(em.tokens, llama.to_tokens(em.text))  # BOS prepended like TransformerLens does
    assert em.prepend_bos and not em.key_mask[0, 0]
    assert marked_tokens(tok, em).strip() == "Answer in JSON."
    assert em.attention_mask.all()


def test_substrings_and_char_ranges_give_the_same_mask(llama):
    text = "Maria is a nurse. Answer in JSON."
    a = emphasize(llama, text, substrings=["Answer in JSON."])
    b = emphasize(llama, text, char_ranges=[(18, 33)])
    c = emphasize(llama, "Maria is a nurse. *Answer in JSON.*")
    assert torch.equal(a.key_mask, b.key_mask) and torch.equal(a.key_mask, c.key_mask)
    d = emphasize(llama, "the cat and the dog", substrings=[("the", 2)])
    assert marked_tokens(llama.tokenizer, d).strip() == "the"
    assert d.spans == ((12, 15),)


def test_several_spans_are_a_union(llama):
    two = emphasize(llama, "*Maria* is a nurse. *Answer in JSON.*")
    one_a = emphasize(llama, "*Maria* is a nurse. Answer in JSON.")
    one_b = emphasize(llama, "Maria is a nurse. *Answer in JSON.*")
    assert torch.equal(two.key_mask, one_a.key_mask | one_b.key_mask)
    assert len(two.spans) == 2


def test_chat_template_spans(llama, tok):
    em = emphasize(llama, "Maria is a nurse. *Answer in JSON.*", chat=True)
    rendered = tok.apply_chat_template([{"role": "user", "content": "Maria is a nurse. Answer in JSON."}],
                                       tokenize=False, add_generation_prompt=True)
    assert em.text == rendered
    (s, e), = em.spans
    assert em.text[s:e] == "Answer in JSON."
    assert not em.prepend_bos
    # no doubled BOS: the template's own <|im_start|> is the first token, once
    assert em.tokens[0, 0] == tok.bos_token_id and em.tokens[0, 1] != tok.bos_token_id
    assert torch.equal(em.tokens, llama.to_tokens(em.text, prepend_bos=False))
    assert marked_tokens(tok, em).strip() == "Answer in JSON."


def test_chat_with_system_prompt(llama):
    em = emphasize(llama, "*Be brief.* Hello", chat=True, system_prompt="Be brief. You help.")
    (s, e), = em.spans
    # the span is found in the user turn, not in the identical system text
    assert em.text[s:e] == "Be brief." and s > em.text.index("user")


def test_batch_is_left_padded(llama):
    em = emphasize(llama, ["Maria is a nurse. *Answer in JSON.*", "a *b*"])
    assert em.tokens.shape[0] == 2 and em.batch_size == 2
    n_short = int(em.attention_mask[1].sum())
    assert em.attention_mask[1, -n_short:].all() and not em.attention_mask[1, :-n_short].any()
    assert not em.key_mask[1, :-n_short].any()  # padding is never emphasised
    assert torch.equal(em.key_mask[1, -n_short:], emphasize(llama, "a *b*").key_mask[0])
    assert em.text == ("Maria is a nurse. Answer in JSON.", "a b")


def test_batch_per_row_substrings(llama):
    em = emphasize(llama, ["one two", "three four"], substrings=[["two"], ["three"]])
    assert em.spans == (((4, 7),), ((0, 5),))
    with pytest.raises(ValueError, match="one sequence per text"):
        emphasize(llama, ["one two", "three four"], substrings=[["two"]])


class _SlowTokenizer:
    is_fast = False


@pytest.mark.parametrize("call,match", [
    (lambda m: emphasize(m, "no markers here"), "No emphasis"),
    (lambda m: emphasize(m, "unbalanced *here"), "never closed"),
    (lambda m: emphasize(m, "empty ** span"), "Empty emphasis"),
    (lambda m: emphasize(m, "abc", substrings=["xyz"]), "not found"),
    (lambda m: emphasize(m, "abc", char_ranges=[(2, 9)]), "outside the text"),
    (lambda m: emphasize(m, "abc", substrings=["a"], char_ranges=[(0, 1)]), "not both"),
    (lambda m: emphasize(m, []), "empty list"),
    (lambda m: emphasize(_SlowTokenizer(), "a *b*"), "fast"),
])
def test_bad_input_is_a_clear_error(llama, call, match):
    with pytest.raises(ValueError, match=match):
        call(llama)


def test_span_covering_no_token_is_an_error():
    """A word-level tokenizer drops spaces from its offsets: a span of only spaces covers no token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    wl = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    assert emphasize(wl, "a *b*", prepend_bos=False).key_mask.tolist() == [[False, True]]
    with pytest.raises(ValueError, match="covers no token"):
        emphasize(wl, "a* *b", prepend_bos=False)


def test_chat_without_template_is_an_error(tok):
    from transformers import AutoTokenizer
    from tests.tiny import tiny_tokenizer_dir

    plain = AutoTokenizer.from_pretrained(tiny_tokenizer_dir())
    plain.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        emphasize(plain, "a *b*", chat=True)


# --- fuzzing: the key mask covers exactly the tokens overlapping marked characters ------------------------

_segment = st.text(alphabet=st.sampled_from(list("ab xyJSON.,*\\{}é😀\n")), min_size=1, max_size=8)


def _escape(s):
    return s.replace("\\", "\\\\").replace("*", "\\*")


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_segment, st.booleans()), min_size=1, max_size=6))
def test_fuzz_key_mask_is_exactly_the_overlapping_tokens(tok, segments):
    # Adjacent marked segments would need '**' between them; merge them in the ground truth instead.
    merged = []
    for text, marked in segments:
        if merged and merged[-1][1] == marked:
            merged[-1] = (merged[-1][0] + text, marked)
        else:
            merged.append((text, marked))
    if not any(m for _, m in merged):
        merged.append(("z", True))
    markup = "".join(f"*{_escape(t)}*" if m else _escape(t) for t, m in merged)
    clean = "".join(t for t, _ in merged)
    marked_chars, pos = set(), 0
    for t, m in merged:
        if m:
            marked_chars.update(range(pos, pos + len(t)))
        pos += len(t)

    got_clean, _ = parse_markup(markup)
    assert got_clean == clean
    # Ground truth from the generator and the tokenizer's own offsets, not from the parser.
    enc = tok(clean, add_special_tokens=False, return_offsets_mapping=True)
    expected = [any(c in marked_chars for c in range(a, b)) for a, b in enc["offset_mapping"]]
    if not any(expected):
        return  # every marked character fell in no token's offsets; covered by the error test above
    em = emphasize(tok, markup, prepend_bos=False)
    assert em.tokens[0].tolist() == enc["input_ids"]
    assert em.key_mask[0].tolist() == expected
