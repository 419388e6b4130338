"""Tokenizers that lie about offsets: zero-width ``offset_mapping`` (Llama-3 / 3.2, tokenizers #1688) or none.

The wrappers below take a healthy fast tokenizer and change only what it reports as offsets: ``ZeroWidthOffsets``
returns ``(start, start)`` for every token, as the Llama-3 tokenizers did (tokenizers #1517, #1553, #1688);
``NoOffsets`` refuses ``return_offsets_mapping`` the way transformers' Python tokenizers do. The ids are the
healthy tokenizer's own, so the emphasis found through them must equal the one the healthy offsets give; that
offset path is checked against ground truth from the tokens' own bytes in ``tests/test_spans.py``.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pasta_lens import emphasize
from pasta_lens.offsets import decoded_ranges, token_ranges
from tests.test_spans import metaspace_tokenizer


class Wrapped:
    """A tokenizer that behaves like ``inner`` except for the offsets it reports."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, text, **kwargs):
        return self.inner(text, **kwargs)


class ZeroWidthOffsets(Wrapped):
    """``offset_mapping`` with every range collapsed to its start, as Llama-3's tokenizer returned it."""

    def __call__(self, text, **kwargs):
        enc = self.inner(text, **kwargs)
        if kwargs.get("return_offsets_mapping"):
            enc["offset_mapping"] = [(a, a) for a, _ in enc["offset_mapping"]]
        return enc


class NoOffsets(Wrapped):
    """No offsets at all: ``return_offsets_mapping`` raises, as transformers' Python tokenizers do."""

    is_fast = False

    def __call__(self, text, **kwargs):
        if kwargs.get("return_offsets_mapping"):
            raise NotImplementedError("return_offset_mapping is not available when using Python tokenizers.")
        return self.inner(text, **kwargs)


LIARS = [ZeroWidthOffsets, NoOffsets]
TEXT = "Maria is a nurse who lives in Paris. *Answer in JSON format.*"


def test_the_wrappers_really_lie(tok):
    zero = ZeroWidthOffsets(tok)("Maria is a nurse.", add_special_tokens=False, return_offsets_mapping=True)
    assert zero["offset_mapping"] and all(a == b for a, b in zero["offset_mapping"])
    with pytest.raises(NotImplementedError):
        NoOffsets(tok)("Maria", return_offsets_mapping=True)


@pytest.mark.parametrize("liar", LIARS)
def test_spans_are_located_as_with_true_offsets(tok, liar):
    truth = emphasize(tok, TEXT, prepend_bos=False)
    lied = emphasize(liar(tok), TEXT, prepend_bos=False)
    assert torch.equal(lied.tokens, truth.tokens) and torch.equal(lied.key_mask, truth.key_mask)
    assert tok.decode(lied.tokens[0, lied.key_mask[0]].tolist()).strip() == "Answer in JSON format."


@pytest.mark.parametrize("liar,why", [(ZeroWidthOffsets, "zero-width"), (NoOffsets, "no offsets")])
def test_the_fallback_says_why_it_was_taken(tok, liar, why):
    ranges = token_ranges(liar(tok), "Maria is a nurse.")
    assert ranges.source == "decoded" and why in ranges.why
    healthy = token_ranges(tok, "Maria is a nurse.")
    assert healthy.source == "offsets" and healthy.ranges == ranges.ranges


def test_the_model_path_takes_the_fallback_too(llama, tok):
    """Through a model (BOS prepended from its cfg, chat template rendered): the same tokens and mask."""

    class Model:
        tokenizer = ZeroWidthOffsets(llama.tokenizer)
        cfg = llama.cfg

    for chat in (False, True):
        truth = emphasize(llama, TEXT, chat=chat)
        lied = emphasize(Model(), TEXT, chat=chat)
        assert torch.equal(lied.tokens, truth.tokens) and torch.equal(lied.key_mask, truth.key_mask)


def test_a_tokenizer_that_changes_the_text_is_a_clear_error():
    """Lower-casing tokenizer without offsets: its decoded tokens are not the text, so nothing can be located."""
    import tempfile

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.normalizer = normalizers.Lowercase()
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(["maria is a nurse."] * 5, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tempfile.mkdtemp(prefix="pasta_lower_tok_")
    PreTrainedTokenizerFast(tokenizer_object=raw).save_pretrained(path)
    lower = AutoTokenizer.from_pretrained(path)
    assert emphasize(lower, "Maria is a *nurse*.", prepend_bos=False).key_mask.any()  # its offsets are fine
    with pytest.raises(ValueError, match="normalises the text"):
        emphasize(ZeroWidthOffsets(lower), "Maria is a *nurse*.", prepend_bos=False)


# --- property: on random texts the fallback equals the offset path --------------------------------------------

_chars = st.sampled_from(list("ab xyJSON.,{}é中😀\n") + ["  ", "the", " nurse"])
_text = st.lists(_chars, min_size=1, max_size=20).map("".join)


@settings(max_examples=300, deadline=None)
@given(_text, st.data())
def test_fuzz_decoded_ranges_equal_true_offsets_on_a_byte_level_tokenizer(tok, text, data):
    truth = token_ranges(tok, text)
    assert truth.source == "offsets"
    assert decoded_ranges(tok, text, truth.ids) == truth.ranges
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    for liar in LIARS:
        try:
            expected = emphasize(tok, text, char_ranges=(start, end), prepend_bos=False)
        except ValueError as err:  # a span the offsets put on no token: the fallback must refuse it too
            with pytest.raises(ValueError, match="covers no token"):
                emphasize(liar(tok), text, char_ranges=(start, end), prepend_bos=False)
            assert "covers no token" in str(err)
            continue
        got = emphasize(liar(tok), text, char_ranges=(start, end), prepend_bos=False)
        assert torch.equal(got.tokens, expected.tokens) and torch.equal(got.key_mask, expected.key_mask)


_meta_text = st.lists(st.sampled_from(["Maria", " is", " a", " nurse", " in", " Paris", ".", " ", "the", " cat",
                                       "ab", "c"]), min_size=1, max_size=12).map("".join)


@settings(max_examples=200, deadline=None)
@given(_meta_text, st.data())
def test_fuzz_fallback_equals_the_offset_path_on_a_metaspace_tokenizer(text, data):
    """SentencePiece-style: the inserted '▁' token has offsets but no characters; both paths leave it unmarked."""
    mt = metaspace_tokenizer()
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    if not text[start:end].strip():
        return  # a span of spaces only: which token owns a space is a convention, not a location
    expected = emphasize(mt, text, char_ranges=(start, end), prepend_bos=False)
    for liar in LIARS:
        got = emphasize(liar(mt), text, char_ranges=(start, end), prepend_bos=False)
        assert torch.equal(got.tokens, expected.tokens) and torch.equal(got.key_mask, expected.key_mask)
