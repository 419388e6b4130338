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


class _NotATokenizer:
    is_fast = False


@pytest.mark.parametrize("call,match", [
    (lambda m: emphasize(m, "no markers here"), "No emphasis"),
    (lambda m: emphasize(m, "unbalanced *here"), "never closed"),
    (lambda m: emphasize(m, "empty ** span"), "Empty emphasis"),
    (lambda m: emphasize(m, "abc", substrings=["xyz"]), "not found"),
    (lambda m: emphasize(m, "abc", char_ranges=[(2, 9)]), "outside the text"),
    (lambda m: emphasize(m, "abc", substrings=["a"], char_ranges=[(0, 1)]), "not both"),
    (lambda m: emphasize(m, []), "empty list"),
    (lambda m: emphasize(_NotATokenizer(), "a *b*"), "Expected a TransformerLens model with a tokenizer"),
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


# --- chat rendering: the span is the user's text, never a template word that looks the same -------------------

# The tiny tokenizer's template (tests/tiny.py), written out by hand: the ground truth for where the user text goes.
USER_OPEN = "<|im_start|>user\n"
TURN_END = "<|im_end|>\n<|im_start|>assistant\n"


def system_part(system):
    return "" if system is None else f"<|im_start|>system\n{system}<|im_end|>\n"


def test_chat_span_on_a_template_word_marks_the_users_word(tok):
    em = emphasize(tok, "*assistant*", chat=True)
    assert em.text == USER_OPEN + "assistant" + TURN_END
    assert em.spans == ((17, 26),)  # the user's word; rfind over the rendering found the template's (49, 58)
    assert marked_tokens(tok, em) == "assistant"


def test_render_chat_gives_prefix_text_suffix(tok):
    from pasta_lens.chat import render_chat

    history = [{"role": "user", "content": "user"}, {"role": "assistant", "content": "assistant"}]
    r = render_chat(tok, "assistant", system_prompt="assistant", history=history)
    prefix = system_part("assistant") + USER_OPEN + "user<|im_end|>\n<|im_start|>assistant\nassistant<|im_end|>\n"
    assert r.text == prefix + USER_OPEN + "assistant" + TURN_END
    assert (r.start, r.end) == (len(prefix) + len(USER_OPEN), len(prefix) + len(USER_OPEN) + len("assistant"))


def test_chat_template_that_changes_the_text_is_refused():
    from transformers import AutoTokenizer
    from tests.tiny import tiny_tokenizer_dir

    trimming = AutoTokenizer.from_pretrained(tiny_tokenizer_dir())
    trimming.chat_template = trimming.chat_template.replace("m['content']", "m['content'] | trim")
    assert emphasize(trimming, "*a* b", chat=True).spans == ((17, 18),)
    with pytest.raises(ValueError, match="strips leading/trailing whitespace"):
        emphasize(trimming, " *a* b ", chat=True)
    twice = AutoTokenizer.from_pretrained(tiny_tokenizer_dir())
    twice.chat_template = twice.chat_template.replace("{{ m['content'] }}", "{{ m['content'] }}{{ m['content'] }}")
    with pytest.raises(ValueError, match="2 times"):
        emphasize(twice, "*a* b", chat=True)


_template_word = st.sampled_from(["assistant", "user", "system", "<|im_start|>", "<|im_end|>", " ", "\n", "a",
                                  "Paris", ".", "user\n", "<|im_start|>assistant\n"])
_chat_segment = st.lists(_template_word, min_size=1, max_size=4).map("".join)


def token_char_ranges(tok, ids):
    """Each token's character range, found by decoding it alone and laying the pieces end to end."""
    pieces = [tok.decode([i]) for i in ids]
    ranges, pos = [], 0
    for piece in pieces:
        ranges.append((pos, pos + len(piece)))
        pos += len(piece)
    return "".join(pieces), ranges


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_chat_segment, st.booleans()), min_size=1, max_size=5),
       st.one_of(st.none(), _chat_segment))
def test_fuzz_chat_span_is_the_users_text(tok, segments, system):
    merged = []
    for text, marked in segments:
        if merged and merged[-1][1] == marked:
            merged[-1] = (merged[-1][0] + text, marked)
        else:
            merged.append((text, marked))
    if not any(m for _, m in merged):
        merged.append(("assistant", True))
    markup = "".join(f"*{t}*" if m else t for t, m in merged)
    user = "".join(t for t, _ in merged)
    prefix = system_part(system) + USER_OPEN
    marked_chars, pos = set(), len(prefix)
    for t, m in merged:
        if m:
            marked_chars.update(range(pos, pos + len(t)))
        pos += len(t)

    em = emphasize(tok, markup, chat=True, system_prompt=system)
    assert em.text == prefix + user + TURN_END
    assert {c for s, e in em.spans for c in range(s, e)} == marked_chars
    # Ground truth for the mask from decoded tokens: a token is marked iff one of its characters is.
    decoded, ranges = token_char_ranges(tok, em.tokens[0].tolist())
    assert decoded == em.text  # ASCII only: every token decodes to whole characters
    assert em.key_mask[0].tolist() == [any(c in marked_chars for c in range(a, b)) for a, b in ranges]


# --- bad inputs: what users mean is accepted, the rest is a clear error ----------------------------------------

def test_a_bare_substring_is_one_substring(tok):
    em = emphasize(tok, "Maria is a nurse.", substrings="nurse", prepend_bos=False)
    assert em.spans == ((11, 16),)  # read letter by letter it marked "Maria", " is", " nurse"
    assert marked_tokens(tok, em) == " nurse"
    assert emphasize(tok, "the cat and the dog", substrings=("the", 2), prepend_bos=False).spans == ((12, 15),)
    batch = emphasize(tok, ["one two", "three four"], substrings=["two", "three"], prepend_bos=False)
    assert batch.spans == (((4, 7),), ((0, 5),))


def test_a_bare_char_range_is_one_range(tok):
    em = emphasize(tok, "Maria is a nurse.", char_ranges=(0, 5), prepend_bos=False)
    assert em.spans == ((0, 5),) and marked_tokens(tok, em) == "Maria"
    batch = emphasize(tok, ["one two", "three four"], char_ranges=[(4, 7), [(0, 5)]], prepend_bos=False)
    assert batch.spans == (((4, 7),), ((0, 5),))


@pytest.mark.parametrize("kwargs,match", [
    (dict(text="the cat", substrings=("the", 1.5)), r"whole number.*\('the', 2\)"),
    (dict(text="the cat", substrings=[("the", 1.5)]), r"whole number"),
    (dict(text="the cat", substrings=[("the", True)]), r"whole number"),
    (dict(text="the cat", substrings=[3]), r"string or a \(string, n\) pair"),
    (dict(text="the cat", substrings=7), r"substrings must be"),
    (dict(text="the cat", char_ranges=(0, 3.5)), r"\(start, end\) pair of integers"),
    (dict(text="the cat", char_ranges=[(0, 3), 5]), r"\(start, end\) pair of integers"),
    (dict(text="the cat", char_ranges="0:3"), r"char_ranges must be"),
    (dict(text=["a b", "c d"], substrings="ab"), r"one entry per text"),
    (dict(text=123), r"prompt string or a list of prompt strings; got int"),
    (dict(text=["a *b*", 5]), r"got an entry of type int"),
    (dict(text=b"a *b*"), r"got bytes"),
])
def test_malformed_emphasis_arguments_name_the_fix(tok, kwargs, match):
    with pytest.raises(ValueError, match=match):
        emphasize(tok, prepend_bos=False, **kwargs)


def test_prompt_longer_than_the_context_is_refused_before_the_model_runs(gpt2):
    n_ctx = gpt2.cfg.n_ctx

    def marked(n):  # "*a* the the ...": BOS + "a" + n tokens " the"
        return "*a*" + " the" * n

    at_limit = emphasize(gpt2, marked(n_ctx - 2))
    assert at_limit.tokens.shape[1] == n_ctx  # one " the" is one token here; the limit itself is fine
    too_long = torch.cat([at_limit.tokens, at_limit.tokens[:, -1:]], dim=1)
    with pytest.raises((IndexError, RuntimeError)), torch.inference_mode():  # the bridge: IndexError; HookedTransformer: RuntimeError
        gpt2(too_long)
    with pytest.raises(ValueError, match=rf"{n_ctx + 1} tokens long .* holds {n_ctx} \(cfg.n_ctx\)"):
        emphasize(gpt2, marked(n_ctx - 1))
    with pytest.raises(ValueError, match=r"Prompt 1 is"):
        emphasize(gpt2, ["*a* b", marked(n_ctx - 1)])
