"""Emphasis parsing and tokenisation: markup, substrings, char ranges, chat templates, batches, errors."""

import functools

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


def _gpt2_byte_decoder():
    """GPT-2's byte-level alphabet, inverted: vocabulary character -> byte (printable bytes map to themselves)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_DECODER = _gpt2_byte_decoder()


def _byte_level_bytes(piece):
    return bytes(_BYTE_DECODER[c] for c in piece)


def _mark(segments):
    """Markup, clean text and the set of marked character positions for generated (text, marked) segments."""
    merged = []  # adjacent marked segments would need '**' between them; merge them instead
    for text, marked in segments:
        if merged and merged[-1][1] == marked:
            merged[-1] = (merged[-1][0] + text, marked)
        else:
            merged.append((text, marked))
    if not any(m for _, m in merged):
        merged.append(("a", True))
    markup = "".join(f"*{_escape(t)}*" if m else _escape(t) for t, m in merged)
    marked_chars, pos = set(), 0
    for t, m in merged:
        if m:
            marked_chars.update(range(pos, pos + len(t)))
        pos += len(t)
    return markup, "".join(t for t, _ in merged), marked_chars


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_segment, st.booleans()), min_size=1, max_size=6))
def test_fuzz_key_mask_is_exactly_the_overlapping_tokens(tok, segments):
    markup, clean, marked_chars = _mark(segments)
    got_clean, _ = parse_markup(markup)
    assert got_clean == clean
    # Ground truth from the characters themselves, not from the tokenizer's offsets (which the code uses): each
    # token's bytes, decoded from the byte-level vocabulary, laid end to end over the text's UTF-8 bytes. A token
    # is emphasised when one of its bytes belongs to a marked character.
    ids = tok(clean, add_special_tokens=False)["input_ids"]
    pieces = [_byte_level_bytes(piece) for piece in tok.convert_ids_to_tokens(ids)]
    assert b"".join(pieces) == clean.encode("utf-8")
    byte_marked = [i in marked_chars for i, ch in enumerate(clean) for _ in ch.encode("utf-8")]
    expected, start = [], 0
    for piece in pieces:
        expected.append(any(byte_marked[start:start + len(piece)]))
        start += len(piece)
    em = emphasize(tok, markup, prepend_bos=False)
    assert em.tokens[0].tolist() == ids
    assert em.key_mask[0].tolist() == expected


# --- a SentencePiece-style (Metaspace) tokenizer: '▁' stands for the space before a word ------------------------

_META_CORPUS = ["Maria is a nurse who lives in Paris.", "Answer in JSON format, please.", "the cat sat on the mat",
                "a b c ab bc abc  double  spaces"] * 20
_META_ALPHABET = sorted(set("".join(_META_CORPUS)))  # characters the tokenizer knows (no <unk> in the fuzz)


@functools.lru_cache(maxsize=1)
def metaspace_tokenizer():
    """A tiny BPE with a Metaspace pre-tokenizer (as SentencePiece models converted to fast tokenizers use),
    built in memory, saved and loaded back from disk (the bridge re-reads tokenizers by path)."""
    import tempfile

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    raw.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    raw.train_from_iterator(_META_CORPUS, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    path = tempfile.mkdtemp(prefix="pasta_metaspace_tok_")
    fast.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def _metaspace_char_ranges(tok, ids, text):
    """Each token's character range in ``text`` from its own characters ('▁' read as a space), not offsets.

    The pre-tokenizer writes one '▁' in front of text that does not start with a space: that character is in no
    position of ``text`` and is dropped from the first token.
    """
    pieces = [p.replace("▁", " ") for p in tok.convert_ids_to_tokens(ids)]
    if "".join(pieces) != text:
        assert "".join(pieces) == " " + text and pieces[0].startswith(" "), (pieces, text)
        pieces[0] = pieces[0][1:]
    ranges, start = [], 0
    for piece in pieces:
        ranges.append((start, start + len(piece)))
        start += len(piece)
    return ranges


def test_metaspace_tokenizer_marks_the_words_of_the_span():
    mt = metaspace_tokenizer()
    em = emphasize(mt, "Maria is *a nurse* in Paris.", prepend_bos=False)
    ids = em.tokens[0].tolist()
    assert mt.convert_ids_to_tokens(ids)[0] == "▁Maria"  # the tokenizer really is Metaspace-style
    marked = "".join(p for p, m in zip(mt.convert_ids_to_tokens(ids), em.key_mask[0].tolist()) if m)
    assert marked.replace("▁", " ") == " a nurse"  # '▁a' and '▁nurse' (with their spaces), nothing else
    # marking only the space before a word marks that word's token: the space is its first character
    em = emphasize(mt, "Maria is a* *nurse.", prepend_bos=False)
    toks = mt.convert_ids_to_tokens(em.tokens[0].tolist())
    assert [t for t, m in zip(toks, em.key_mask[0].tolist()) if m] == ["▁nurse"]
    # with BOS prepended, the mask shifts by one and BOS is never emphasised
    with_bos = emphasize(mt, "Maria is *a nurse* in Paris.", prepend_bos=True)
    assert with_bos.tokens[0, 0] == mt.bos_token_id and not with_bos.key_mask[0, 0]
    assert with_bos.key_mask[0, 1:].tolist() == emphasize(mt, "Maria is *a nurse* in Paris.",
                                                          prepend_bos=False).key_mask[0].tolist()


_meta_segment = st.text(alphabet=st.sampled_from([c for c in _META_ALPHABET if c != "*"]), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_meta_segment, st.booleans()), min_size=1, max_size=6))
def test_fuzz_metaspace_key_mask_is_exactly_the_overlapping_tokens(segments):
    mt = metaspace_tokenizer()
    markup, clean, marked_chars = _mark(segments)
    ids = mt(clean, add_special_tokens=False)["input_ids"]
    assert mt.unk_token_id not in ids
    expected = [any(c in marked_chars for c in range(a, b)) for a, b in _metaspace_char_ranges(mt, ids, clean)]
    em = emphasize(mt, markup, prepend_bos=False)
    assert em.tokens[0].tolist() == ids
    assert em.key_mask[0].tolist() == expected
