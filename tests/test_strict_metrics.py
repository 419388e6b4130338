"""The strict metrics beside the paper's: each one passes a real answer and rejects the cheapest cheats (copy one word
of the input, stop after one sentence, answer ``{}``), where the paper's metric lets some of them through."""

import re

import pytest

from pasta_lens.metrics import (OCCUPATION_NAMES, content_kept, content_words, has_they_form, is_rewrite,
                                json_format_ok, json_occupation_ok, json_strict_object, json_strict_occupation_ok,
                                names_occupation, no_gendered_pronouns, occupation_names)
from pasta_lens.tasks import OCCUPATIONS, get_task
from pasta_lens.tasks.biographies import occupation_text


def _cheats(bio):
    """What a model that does not do the task could write: each word of the bio, its first sentence, ``{}``, and
    JSON objects whose occupation is a copied word."""
    words = sorted(set(re.findall(r"[A-Za-z][A-Za-z'-]+", bio.context)))
    first = bio.context[:bio.first_sentence_end]
    return (words + [first, "{}", "", "They.", bio.context]
            + [f'{{"name": "{bio.name}", "occupation": "{w}"}}' for w in words])


def test_synonym_lists_are_explicit_and_cover_every_occupation():
    assert sorted(OCCUPATION_NAMES) == sorted(OCCUPATIONS)
    for occupation in OCCUPATIONS:
        assert occupation_text(occupation).lower() in occupation_names(occupation)
        for name in occupation_names(occupation):
            assert names_occupation(f"She works as a {name.upper()}.", occupation)
            assert names_occupation(f"Both of them are {name}s", occupation)  # plural
    with pytest.raises(ValueError, match="28 BiasBios"):
        occupation_names("astronaut")


@pytest.mark.parametrize("text, occupation, named", [
    ("a registered nurse", "nurse", True), ("the nursery", "nurse", False), ("Cardiologist", "physician", False),
    ("a family doctor", "physician", True), ("software-engineer", "software_engineer", True),
    ("an engineer", "software_engineer", False), ("a DJ", "dj", True), ("Django apps", "dj", False),
    ("yoga", "yoga_teacher", False), ("a yoga instructor", "yoga_teacher", True), ("a teacher", "yoga_teacher", False),
])
def test_names_occupation_is_whole_words_and_listed_names_only(text, occupation, named):
    assert names_occupation(text, occupation) is named


def test_strict_json_rejects_what_the_paper_accepts():
    assert json_format_ok("{}") and json_strict_object("{}") is None  # {} is "formatted" for the paper only
    runaway = '{"name": "Ana", "occupation": {"title": "nurse"}, "x": {"y": 1}'
    assert json_format_ok(runaway) and json_strict_object(runaway) is None
    assert json_strict_object('Here: {"name": "Ana", "occupation": "nurse"} Hope this helps.') is not None
    nursery = '{"name": "Ana", "occupation": "Nursery"}'
    assert json_occupation_ok(nursery, "nurse") and not json_strict_occupation_ok(nursery, "nurse")
    elsewhere = '{"name": "nurse Ana", "job": "nurse"}'  # the occupation, but not in the occupation field
    assert json_occupation_ok(elsewhere, "nurse") and not json_strict_occupation_ok(elsewhere, "nurse")
    assert json_strict_occupation_ok('{"Occupation ": "Registered Nurse", "name": "Ana"}', "nurse")
    assert json_strict_occupation_ok('{"name": "Ana", "occupation": "lawyer"}', "attorney")  # a listed synonym
    assert not json_strict_occupation_ok('{"name": "Ana", "occupation": "Legal Aid Society"}', "attorney")


@pytest.mark.parametrize("source", ["implied", "named"])
def test_json_cheats_fail_the_strict_metrics(source):
    task = get_task("json", bios=source)
    for bio in task.examples("validation", 40):
        gold = task.score(bio, task.answer(bio))
        assert gold["f_acc_strict"] == gold["p_acc_strict"] == gold["occupation_named"] == 1.0
        for cheat in _cheats(bio):
            s = task.score(bio, cheat)
            if source == "implied":  # nothing in an implied bio names its occupation: no copy can
                assert s["p_acc_strict"] == s["occupation_named"] == 0.0, cheat
            if not cheat.startswith('{"name"'):  # copies of words or sentences, '{}', '': never strictly JSON
                assert s["f_acc_strict"] == 0.0, cheat
        assert task.score(bio, "{}")["f_acc_strict"] == 0.0 and task.score(bio, "{}")["f_acc"] == 1.0


def test_named_bios_are_passed_by_a_copy_which_is_why_implied_exist():
    task = get_task("json", bios="named")
    bio = task.examples("validation", 1)[0]
    copied = f'{{"name": "{bio.name}", "occupation": "{occupation_text(bio.occupation)}"}}'
    assert occupation_text(bio.occupation) in bio.first_sentence
    assert task.score(bio, copied)["p_acc_strict"] == 1.0  # copying one phrase of the first sentence is enough


def test_content_words_and_they_forms():
    assert content_words("She works on the wards.") == {"work", "ward"}
    assert has_they_form("Their day starts early") and not has_they_form("theyre and Themis")
    assert content_kept("", "She works.") == 0.0 and content_kept("anything", "she the") == 0.0


@pytest.mark.parametrize("source", ["implied", "named"])
def test_pronoun_cheats_fail_rewrite_while_the_paper_passes_them(source):
    task = get_task("pronoun", bios=source)
    paper_passes = 0
    for bio in task.examples("validation", 40):
        gold = task.score(bio, task.answer(bio))
        assert gold["rewrite"] == gold["a_acc_rewrite"] == gold["a_acc"] == 1.0, task.answer(bio)
        for cheat in _cheats(bio):
            s = task.score(bio, cheat)
            paper_passes += s["a_acc"] == 1.0
            assert s["rewrite"] == 0.0 and s["a_acc_rewrite"] == 0.0, cheat
        first_they = "They " + bio.neutral[:bio.first_sentence_end]  # one sentence with a they-form: too little
        assert task.score(bio, first_they)["rewrite"] == 0.0 or len(content_words(bio.context)) <= 4
    assert paper_passes > 100  # the paper's A.Acc counts copied words, '{}' and '' as pronoun-free answers


def test_rewrite_needs_half_the_content_and_a_they_form():
    bio = "She runs a clinic in Lisbon, treats athletes and teaches anatomy at the university."
    assert is_rewrite("They run a clinic in Lisbon, treat athletes and teach anatomy at the university.", bio)
    assert not is_rewrite("She runs a clinic in Lisbon, treats athletes and teaches anatomy at the university.", bio)
    assert not is_rewrite("They run a clinic.", bio)  # 2 of 7 content words
    assert no_gendered_pronouns("They run a clinic.")  # ... which the paper's A.Acc accepts
    with pytest.raises(ValueError, match="fraction"):
        is_rewrite("x", bio, min_kept=0)
