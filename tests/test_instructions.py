"""The instruction-following task: sizes, the split by instruction type, marked spans, checkers (against answers
written here and against if-verifiable's own scoring), cheats, own-answer corrections, profiling openings."""

import json

import pytest

pytest.importorskip("if_verifiable", reason="the instruction checkers need if-verifiable (Python >= 3.11)")

from if_verifiable.common import evaluate_instructions  # noqa: E402
from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT  # noqa: E402

from pasta_lens.metrics import sentence_count, sentences  # noqa: E402
from pasta_lens.spans import parse_markup  # noqa: E402
from pasta_lens.tasks import InstructionExample, get_task, type_accuracy  # noqa: E402
from pasta_lens.tasks.instruction_catalog import BY_ID, SPLIT_TYPES, TYPES  # noqa: E402
from pasta_lens.tasks.requests import REQUESTS  # noqa: E402

# The split, written down: test measures instruction types that no train or validation prompt carries.
EXPECTED_SPLIT = {
    "train": {"lowercase", "no_comma", "start_phrase", "end_phrase", "quotation", "json_format", "include_keywords",
              "max_words"},
    "validation": {"uppercase", "forbidden_words", "bullet_count", "min_words", "placeholders", "square_brackets"},
    "test": {"postscript", "title", "keyword_frequency", "sentence_count", "no_digits", "sections", "repeat_request"},
}
SPLITS = ("train", "validation", "test")
task = get_task("instructions")


def ex(types, params, request="Describe a sunset over the sea.", words=("sun", "sea", "sky")):
    return InstructionExample(uid="t", source="generated", request=request, words=words, types=tuple(types),
                              texts=tuple(BY_ID[t].wordings[0].format(**p) for t, p in zip(types, params)),
                              params_json=json.dumps(list(params)))


def test_sizes_and_the_split_by_type():
    assert {s: set(SPLIT_TYPES[s]) for s in SPLITS} == EXPECTED_SPLIT
    assert len(TYPES) >= 15 and len(REQUESTS) >= 60
    assert sum(len(task.examples(s)) for s in SPLITS) >= 300 and len(task.examples("test")) >= 200
    for split in SPLITS:
        exs = task.examples(split)
        used = {t for e in exs for t in e.types}
        assert used == EXPECTED_SPLIT[split], split
        assert any(len(e.types) == 2 for e in exs)
        assert {r.kind for r in REQUESTS if r.text in {e.request for e in exs}} == \
            {"story", "email", "summary", "qa", "description", "advice"}
    assert len({e.uid for s in SPLITS for e in task.examples(s)}) == sum(len(task.examples(s)) for s in SPLITS)


def test_every_instruction_is_the_marked_span_and_pairs_never_clash():
    for split in SPLITS:
        for e in task.examples(split):
            clean, spans = parse_markup(task.prompt(e))
            assert [clean[a:b] for a, b in spans] == list(e.texts)
            assert e.request in clean
            if len(e.types) == 2:
                assert not BY_ID[e.types[0]].conflicts(BY_ID[e.types[1]])
            if "repeat_request" in e.types:
                assert "Context:" not in e.request and "passage" not in e.request


# (types, params, an answer that follows them, one that does not): answers written here, not by the checkers
CASES = [
    (["lowercase"], [{}], "the sun sinks into the sea.", "The sun sinks."),
    (["uppercase"], [{}], "THE SUN SINKS INTO THE SEA.", "THE SUN sinks."),
    (["no_comma"], [{}], "The sun sinks and the sea glows.", "The sun sinks, and the sea glows."),
    (["start_phrase"], [{"phrase": "Simply put"}], "Simply put the sea glows.", "The sea glows, simply put."),
    (["end_phrase"], [{"end_phrase": "That is all."}], "The sea glows. That is all.", "That is all. The sea glows."),
    (["quotation"], [{}], '"The sea glows red."', 'The "sea" glows.'),
    (["square_brackets"], [{}], "[The sea glows red.]", "The sea [glows] red."),
    (["json_format"], [{}], '{"answer": "The sea glows red."}', 'Here: {"answer": "The sea glows"}'),
    (["include_keywords"], [{"words": ["sea", "sun"]}], "The sun meets the sea.", "The sun sets."),
    (["forbidden_words"], [{"words": ["sea", "sun"]}], "The sky turns gold.", "The sky and the sea."),
    (["max_words"], [{"n": 5}], "The sky is gold.", "The sky is gold and red."),
    (["min_words"], [{"n": 5}], "The sky is gold and red.", "The sky is gold."),
    (["bullet_count"], [{"n": 2}], "- sun\n- sea", "- sun\n- sea\n- sky"),
    (["placeholders"], [{"n": 2}], "Meet at [place] on [day].", "Meet at [place] on Monday."),
    (["postscript"], [{"marker": "P.S."}], "The sea glows.\nP.S. It was cold.", "The sea glows. PS it was cold."),
    (["title"], [{}], "<<Dusk>> The sea glows.", "<Dusk> The sea glows."),
    (["keyword_frequency"], [{"word": "sea", "n": 2}], "The sea, the sea.", "The sea glows."),
    (["sentence_count"], [{"n": 2}], "The sun sets. The sea glows.", "The sun sets. The sea glows. Night."),
    (["no_digits"], [{}], "Two boats sail at seven.", "2 boats sail at 7."),
    (["sections"], [{"n": 2}], "SECTION 1\nThe sun.\nSECTION 2\nThe sea.", "SECTION 1\nThe sun and the sea."),
    (["repeat_request"], [{"request": "Describe a sunset over the sea."}],
     "Describe a sunset over the sea. The sun sinks.", "A sunset over the sea: the sun sinks."),
]


@pytest.mark.parametrize("types, params, good, bad", CASES, ids=[c[0][0] for c in CASES])
def test_checkers_on_written_answers(types, params, good, bad):
    e = ex(types, params)
    assert task.score(e, good)["prompt_strict"] == 1.0
    assert task.score(e, bad)["prompt_strict"] == 0.0
    assert task.score(e, "")["prompt_loose"] == 0.0


def test_every_type_has_a_written_case():
    assert {c[0][0] for c in CASES} == set(BY_ID)


def test_library_backed_types_agree_with_if_verifiable_scoring():
    """Our prompt- and instruction-level strict/loose equal if-verifiable's own aggregation (its loose rule too)."""
    ids = {"no_comma": ("punctuation:no_comma", {}), "quotation": ("startend:quotation", {}),
           "json_format": ("detectable_format:json_format", {}), "title": ("detectable_format:title", {}),
           "end_phrase": ("startend:end_checker", {"end_phrase": "That is all."}),
           "postscript": ("detectable_content:postscript", {"postscript_marker": "P.S."})}
    answers = ["Sure!\n\"The sea glows.\"", "Here:\n{\"a\": 1}\nBye", "The sea, the sky. That is all.",
               "**<<Dusk>>** The sea.\nP.S. cold", "plain text", "\"x\"", "Sure:\nThe sea glows. That is all.\nBye"]
    params = {"end_phrase": {"end_phrase": "That is all."}, "postscript": {"marker": "P.S."}}
    for ours, (lib_id, kwargs) in ids.items():
        e = ex([ours], [params.get(ours, {})])
        for answer in answers:
            results, scores = evaluate_instructions(answer, [lib_id], [kwargs], "p", INSTRUCTION_DICT)
            mine = task.score(e, answer)
            assert (mine["prompt_strict"], mine["prompt_loose"]) == (scores.binary_strict, scores.binary_loose), \
                (ours, answer)


def test_prompt_and_instruction_level_with_two_instructions():
    e = ex(["lowercase", "no_comma"], [{}, {}])
    s = task.score(e, "the sea glows, and the sun sets.")
    assert (s["prompt_strict"], s["inst_strict"]) == (0.0, 0.5)
    assert task.score(e, "the sea glows and the sun sets.")["inst_strict"] == 1.0
    assert task.score(e, "Sure!\nthe sea glows and the sun sets")["prompt_loose"] == 1.0  # first line dropped
    assert task.score(e, "Sure!\nthe sea glows and the sun sets")["prompt_strict"] == 0.0


def test_cheap_answers_are_no_attempt():
    for split in SPLITS:
        for e in task.examples(split, 80):
            for cheat in ("", "ok", "yes yes yes yes yes yes yes yes", "{}", e.words[0]):
                assert task.score(e, cheat)["prompt_loose_attempt"] == 0.0, (e.uid, cheat)
    e = ex(["no_comma"], [{}])
    assert task.score(e, "ok")["prompt_loose"] == 1.0  # what the attempt guard is for
    assert task.score(e, "The sun sinks slowly into the calm sea.")["prompt_loose_attempt"] == 1.0


def test_sentences():
    assert sentences("It costs 1.5 euros. Really?! Yes\nNew line") == ["It costs 1.5 euros.", "Really?!", "Yes",
                                                                    "New line"]
    assert sentence_count("") == 0 and sentence_count("One. Two. Three") == 3


@pytest.mark.parametrize("split", SPLITS)
def test_corrections_make_answers_follow_the_instructions(split):
    answers = ["Sure, here it is. The Sea was calm, and the sky was red.", "one two three", "A \"quoted\" word, ok"]
    n_correctable = 0
    for e in task.examples(split):
        fix = task.corrector(e)
        if fix is None:
            assert any(BY_ID[t].rewrite is None for t in e.types)
            continue
        n_correctable += 1
        for answer in answers:
            assert task.score(e, fix(answer))["prompt_strict"] == 1.0, (e.types, fix(answer))
    assert n_correctable >= (40 if split != "test" else 0)
    with pytest.raises(ValueError, match="example"):
        task.correct("x")


def test_openings_are_profiling_targets():
    exs = task.examples("train")
    with_opening = [e for e in exs if task.opening(e) is not None]
    assert with_opening and len(with_opening) < len(exs)
    for e in with_opening:  # every correct answer starts with the opening: so does each corrected one
        fix = task.corrector(e)
        if fix is not None:
            assert fix("The sun sets, slowly.").lower().startswith(task.answer(e).lower()), e.types
    without = next(e for e in exs if task.opening(e) is None)
    with pytest.raises(ValueError, match="no gold answer"):
        task.answer(without)
    with pytest.raises(ValueError, match="few-shot"):
        task.demos()


def test_profiling_examples_use_openings(llama):
    pes = task.profiling_examples(llama, "train", n=3)
    assert len(pes) == 3 and all(p.tokens.shape[1] > p.key_mask.shape[1] for p in pes)
    with pytest.raises(ValueError, match="test"):
        task.profiling_examples(llama, "test", n=1)


def test_type_accuracy_from_rows():
    e1, e2 = ex(["lowercase"], [{}]), ex(["lowercase", "no_comma"], [{}, {}])
    rows = [{"metrics": task.score(e1, "all lower")}, {"metrics": task.score(e2, "Not lower, with comma")}]
    assert type_accuracy(rows) == {"lowercase": 0.5, "no_comma": 0.0}
