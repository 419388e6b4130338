"""Metrics on hand-written outputs: JSON F.Acc / P.Acc, pronoun Acc / A.Acc, ROME fluency and its filter."""

import math

import pytest

from pasta_lens.metrics import (fluency, is_fluent, json_format_ok, json_objects, json_occupation_ok, max_fluency,
                                ngram_entropy, no_gendered_pronouns, no_subject_pronouns)


@pytest.mark.parametrize("text, ok", [
    ('{"name": "Ana Silva", "occupation": "nurse"}', True),
    ('Sure! Here it is: {"name": "Ana", "occupation": "nurse"}. Hope it helps.', True),
    ('```json\n{\n  "name": "Ana",\n  "occupation": "nurse"\n}\n```', True),
    ('{"name": , "occupation": ,}', False),                     # the paper's template itself is not JSON
    ('{"name": "Ana", "occupation": "nurse",}', False),          # trailing comma
    ("{'name': 'Ana'}", False),                                  # single quotes
    ('{"name": "Ana", "occupation": "nurse"', False),            # unclosed
    ('["nurse"]', False),                                        # JSON, but not an object
    ("", False),
    ('{} and more', True),                                       # an empty object is a JSON object
    ('broken { then {"a": 1}', True),                            # a later brace parses
])
def test_json_format(text, ok):
    assert json_format_ok(text) is ok


@pytest.mark.parametrize("text, occupation, ok", [
    ('{"name": "Ana", "occupation": "nurse"}', "nurse", True),
    ('{"name": "Ana", "occupation": "Registered Nurse"}', "nurse", True),
    ('{"name": "Ana", "occupation": "teacher"}', "nurse", False),
    ('The occupation is nurse. {"name": "Ana"}', "nurse", False),   # the occupation must be in the JSON
    ('{"name": "Ana", "job": {"title": "Software Engineer"}}', "software engineer", True),
    ('{"name": "Ana", "occupation": ["dj", "poet"]}', "DJ", True),
    ('{"occupation": "nurse",}', "nurse", False),                    # does not parse: no P.Acc either
    ("", "nurse", False),
])
def test_json_occupation(text, occupation, ok):
    assert json_occupation_ok(text, occupation) is ok


def test_json_objects_finds_every_object():
    assert list(json_objects('{"a": 1} x {"b": {"c": 2}}')) == [{"a": 1}, {"b": {"c": 2}}, {"c": 2}]
    with pytest.raises(ValueError, match="non-empty occupation"):
        json_occupation_ok("{}", "")


@pytest.mark.parametrize("text, acc, a_acc", [
    ("They studied history there and then left.", True, True),     # his-tory, t-he, T-here
    ("Hello, the theme of their thesis is chemistry.", True, True),
    ("She is a nurse.", False, False),
    ("SHE is a nurse.", False, False),
    ("He's a nurse.", False, False),
    ("The book is hers.", True, False),
    ("They thanked him, then her.", True, False),
    ("It was HIS, (his) and his!", True, False),
    ("He himself", False, False),
    ("...she", False, False),
    ("shepherd, helper, hereafter, whisper, hermit", True, True),
    ("", True, True),                                               # empty passes: hence the fluency filter
])
def test_pronoun_metrics(text, acc, a_acc):
    assert no_subject_pronouns(text) is acc
    assert no_gendered_pronouns(text) is a_acc


def test_fluency_matches_rome_formula_by_hand():
    # words: a b c a b c -> bigrams ab bc ca ab bc (ab:2, bc:2, ca:1); trigrams abc bca cab abc (abc:2, 1, 1)
    h2 = -(2 * (2 / 5) * math.log2(2 / 5) + (1 / 5) * math.log2(1 / 5))
    h3 = -((2 / 4) * math.log2(2 / 4) + 2 * (1 / 4) * math.log2(1 / 4))
    assert ngram_entropy("a b c a b c", 2) == pytest.approx(h2)
    assert ngram_entropy("a b c a b c", 3) == pytest.approx(h3)
    assert fluency("a b c a b c") == pytest.approx((2 / 3 * h2 + 4 / 3 * h3) / 2)
    assert fluency("") == 0.0 and fluency("word") == 0.0


def test_fluency_orders_repetition_below_prose():
    prose = "Julia Mensah is a personal trainer based in Toronto. They studied at McGill and love hiking."
    loop = "they they they they they they they they they they they they they they"
    assert fluency(prose) > fluency(loop)
    assert fluency(prose) == pytest.approx(max_fluency(len(prose.replace(".", " .").split())))


def test_fluency_filter():
    assert is_fluent("Julia Mensah is a personal trainer based in Toronto. They love hiking.")
    assert not is_fluent("")
    assert not is_fluent("They.")                                       # too short
    assert not is_fluent("They are they are they are they are they are they are they are")
    assert not is_fluent("Julia, Julia, Julia, Julia, Julia, Julia, Julia, Julia, Julia")
    with pytest.raises(ValueError, match="min_words"):
        is_fluent("x", min_words=1)
