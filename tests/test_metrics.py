"""Metrics on hand-written outputs: JSON F.Acc / P.Acc, pronoun Acc / A.Acc, ROME fluency and its filter."""

import math

import pytest

from pasta_lens.metrics import (fluency, is_fluent, json_complete_ok, json_format_ok, json_objects, json_occupation_ok,
                                max_fluency, ngram_entropy, no_gendered_pronouns, no_subject_pronouns)
from tests.reference import official_json_em, official_json_pred


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


@pytest.mark.parametrize("text, ok", [
    ('{"name": "Ana", "occupation": "nurse"}', True),
    ('Here it is:\n```json\n{"name": "Ana", "occupation": "nurse"}\n```\nDone.', True),
    ('{"name": "Ana", "occupation": {"name": "DJ", "family": {"name": "x"}', False),  # inner closes, outer not
    ('{"name": "Ana", "occupation": "nurse"', False),
    ('broken { then {"a": 1}', False),                           # the first brace does not open an object
    ("no json here", False),
])
def test_json_complete_is_strict(text, ok):
    assert json_complete_ok(text) is ok
    assert json_format_ok(text) or not ok  # strict implies the paper's F.Acc


def _fuzz_outputs(n=400, seed=0):
    """Generated outputs built from JSON pieces: objects, runaway nesting, cuts, braces in prose."""
    import json
    import random

    rng = random.Random(seed)
    words = ["nurse", "DJ", "poet", "Software Engineer", "Ana", "model"]
    pieces = ['{', '}', '{"name": "Ana"', ', "occupation": ', '"nurse"', '"dj"', '{"a": 1}', ' text ', ',',
              '"x": {', '```json\n', '\n```', '"occupation": "Poet"}', ':', '[1, 2]', '{}']
    outs = []
    for _ in range(n):
        if rng.random() < 0.3:
            obj = {"name": rng.choice(words), "occupation": rng.choice(words)}
            text = rng.choice(["", "Sure: ", "x } "]) + json.dumps(obj) + rng.choice(["", " ok", "}"])
            outs.append(text[: rng.randint(len(text) // 2, len(text))] if rng.random() < 0.3 else text)
        else:
            outs.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))))
    return outs


def test_f_acc_and_p_acc_equal_the_official_code_on_fuzzed_outputs():
    outs = _fuzz_outputs()
    assert sum(json_format_ok(t) for t in outs) > 50 and sum(not json_format_ok(t) for t in outs) > 50
    for text in outs:
        assert json_format_ok(text) is official_json_em(text), text
        for target in ("nurse", "poet", "software engineer", "dj"):
            assert json_occupation_ok(text, target) is official_json_pred(text, target), (text, target)


def test_p_acc_differs_from_the_official_code_on_lists_by_design():
    text = '{"name": "Ana", "occupation": ["dj", "poet"]}'
    assert json_occupation_ok(text, "dj") and not official_json_pred(text, "dj")


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
