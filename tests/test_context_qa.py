"""Context QA: every question is answerable from its document, the formatted gold passes both metrics, formatting
never costs correctness, copies and lists of values fail it, and the content-kept ratio reads a summary."""

import json

import pytest

from pasta_lens.metrics import answer_found, content_kept_ratios, normalise_answer
from pasta_lens.spans import parse_markup
from pasta_lens.tasks import get_task
from pasta_lens.tasks.context_qa import FORMATS, KINDS

SPLITS = ("train", "validation", "test")
task = get_task("context_qa")


def test_sizes_kinds_and_formats():
    for split in SPLITS:
        exs = task.examples(split)
        assert len(exs) >= 200 and {e.kind for e in exs} == set(KINDS) and {e.format_id for e in exs} == set(FORMATS)
    docs = {s: {e.document for e in task.examples(s)} for s in SPLITS}
    assert not docs["train"] & docs["test"] and not docs["validation"] & docs["test"]


@pytest.mark.parametrize("split", SPLITS)
def test_gold_is_in_the_document_and_the_formatted_gold_passes(split):
    for e in task.examples(split):
        assert any(normalise_answer(a) in normalise_answer(e.document) for a in e.answers), e.uid
        assert task.score(e, task.answer(e)) == {"correct": 1.0, "format": 1.0, "both": 1.0}, (e.uid, task.answer(e))
        clean, spans = parse_markup(task.prompt(e))
        assert [clean[a:b] for a, b in spans] == [FORMATS[e.format_id].text] and e.question in clean


@pytest.mark.parametrize("split", SPLITS)
def test_copies_and_lists_of_values_are_not_correct(split):
    for e in task.examples(split):
        assert task.score(e, e.document)["correct"] == 0.0, e.uid  # a copy of the document
        assert task.score(e, e.question)["correct"] == 0.0, e.uid
        if e.distractors:  # every value of the kind, the gold among them
            assert task.score(e, ", ".join((e.gold,) + e.distractors))["correct"] == 0.0, e.uid
            assert task.score(e, e.distractors[0])["correct"] == 0.0


def test_any_correct_format_keeps_correctness():
    e = next(x for x in task.examples("validation") if x.gold.isalpha())
    for shown in (e.gold.upper(), e.gold.lower(), f'"{e.gold}"', json.dumps({"answer": e.gold}), f"Answer: {e.gold}.",
                  f"The answer is {e.gold}."):
        assert task.score(e, shown)["correct"] == 1.0, shown


def test_format_and_correctness_are_apart():
    e = next(x for x in task.examples("validation") if x.format_id == "capitals" and x.distractors)
    assert task.score(e, e.distractors[0].upper()) == {"correct": 0.0, "format": 1.0, "both": 0.0}
    assert task.score(e, "the answer is " + e.gold.lower())["format"] == 0.0


def test_answer_normalisation():
    assert answer_found("1,240 units", ["1240"]) and answer_found('{"answer": "14:30"}', ["14:30"], ["4:30"])
    assert not answer_found("at 4:30", ["14:30"]) and not answer_found("2", ["12"])
    assert answer_found("TWO YEARS", ["2", "two"], ["5"]) and not answer_found("two or five", ["two"], ["five"])


def test_content_kept_ratios():
    summary = {"tasks": {"context_qa": {"zero-shot": {"correct": 0.8}, "pasta": {"correct": 0.6},
                                        "random": {"correct": None}}}}
    assert content_kept_ratios(summary) == {"zero-shot": 1.0, "pasta": pytest.approx(0.75), "random": None}
    with pytest.raises(ValueError, match="zero-shot"):
        content_kept_ratios({"tasks": {"context_qa": {"pasta": {"correct": 0.5}}}})
    with pytest.raises(ValueError, match="no task"):
        content_kept_ratios({"tasks": {}})
