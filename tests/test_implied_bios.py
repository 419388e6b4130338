"""Implied biographies: no bio names its occupation, every occupation and style is reached, splits are disjoint,
test holds phrasings the other splits never see, and every bio task runs on either source."""

import re
from collections import Counter

import pytest

from pasta_lens.evaluation import evaluate
from pasta_lens.metrics import OCCUPATION_NAMES, names_occupation, no_gendered_pronouns
from pasta_lens.tasks import OCCUPATIONS, get_task, synthetic_biographies
from pasta_lens.tasks.biographies import TEMPLATES as NAMED_TEMPLATES
from pasta_lens.tasks.implied_bios import (LENGTHS, STYLES, TEMPLATES, implied_biographies, names_own_occupation,
                                           third_singular)
from pasta_lens.tasks.occupation_facts import FACTS, FACTS_FILE, load_facts

SPLITS = ("train", "validation", "test")

# Written here, independently of FACTS[...].forbidden: the words that would give each occupation away (matched as
# the start of a word, case-insensitively). A bio that contains one of its own is a named bio, not an implied one.
GIVEAWAYS = {
    "accountant": ["accountan", "accounting", "bookkeep", "cpa"], "architect": ["architect"],
    "attorney": ["attorney", "lawyer", "barrister", "solicitor", "counsel"], "chiropractor": ["chiropract"],
    "comedian": ["comedian", "comedy", "comic", "stand-up", "stand up"], "composer": ["compos"],
    "dentist": ["dentist", "dental", "dentistry"], "dietitian": ["dietitian", "dietician", "diet", "nutritionist"],
    "dj": ["dj", "deejay", "disc jockey"], "filmmaker": ["filmmak", "film maker", "film-maker", "director"],
    "interior_designer": ["interior design", "designer", "decorator"],
    "journalist": ["journalis", "reporter", "correspondent"], "model": ["model"], "nurse": ["nurs"],
    "painter": ["painter", "painting", "paints"], "paralegal": ["paralegal", "legal assistant"],
    "pastor": ["pastor", "minister", "reverend", "preach", "clergy"],
    "personal_trainer": ["trainer", "personal training", "coach"], "photographer": ["photograph"],
    "physician": ["physician", "doctor", "general practitioner", "internist"], "poet": ["poet", "poem"],
    "professor": ["professor", "lecturer"], "psychologist": ["psycholog", "psychotherap", "therapist"],
    "rapper": ["rapper", "rapping", "rap ", "emcee"],
    "software_engineer": ["software engineer", "engineer", "developer", "programmer"], "surgeon": ["surg"],
    "teacher": ["teacher", "teach", "educator"], "yoga_teacher": ["yoga", "teach", "instructor"],
}


def _all(split):
    return implied_biographies(split)


def test_giveaway_list_covers_every_occupation():
    assert sorted(GIVEAWAYS) == sorted(OCCUPATIONS) == sorted(FACTS) == sorted(OCCUPATION_NAMES)


def test_the_facts_file_is_checked_when_read(tmp_path):
    import json

    data = json.loads(FACTS_FILE.read_text(encoding="utf-8"))
    assert list(data) == list(FACTS) and FACTS["nurse"].duties == tuple(data["nurse"]["duties"])
    one = {"nurse": data["nurse"]}
    (tmp_path / "ok.json").write_text(json.dumps(one))
    assert load_facts(tmp_path / "ok.json") == {"nurse": FACTS["nurse"]}
    for broken in ({k: v for k, v in data["nurse"].items() if k != "tools"},      # a field missing
                   {**data["nurse"], "hobbies": ["chess"]},                          # a field unknown
                   {**data["nurse"], "tools": ["a stethoscope", 3]}):                # not a string
        (tmp_path / "bad.json").write_text(json.dumps({"nurse": broken}))
        with pytest.raises(ValueError, match="the facts of 'nurse'"):
            load_facts(tmp_path / "bad.json")


@pytest.mark.parametrize("split", SPLITS)
def test_no_implied_bio_names_its_own_occupation(split):
    for bio in _all(split):
        for text in (bio.context, bio.neutral):
            words = " " + re.sub(r"[^a-z]+", " ", text.lower()) + " "
            hits = [g for g in GIVEAWAYS[bio.occupation] if " " + re.sub(r"[^a-z]+", " ", g) in words]
            assert not hits, f"{bio.uid} ({bio.occupation}) gives itself away with {hits}: {text}"
            assert not names_occupation(text, bio.occupation), (bio.uid, text)  # the strict metric agrees
            assert not names_own_occupation(text, bio.occupation), (bio.uid, text)


def test_forbidden_patterns_cover_the_metric_synonyms():
    for occupation, names in OCCUPATION_NAMES.items():
        for name in names:
            assert names_own_occupation(f"works as a {name} here", occupation), (occupation, name)


@pytest.mark.parametrize("split", SPLITS)
def test_every_occupation_style_and_length_is_reached(split):
    bios = _all(split)
    assert Counter(b.occupation for b in bios).keys() == set(OCCUPATIONS)
    assert min(Counter(b.occupation for b in bios).values()) >= len(bios) // 28
    assert {b.style for b in bios} == {f"{s}/{n}" for s in STYLES for n in LENGTHS}
    assert {b.gender for b in bios} == {"F", "M"}


def test_splits_are_disjoint_in_people_and_text():
    people = {s: {b.name for b in _all(s)} for s in SPLITS}
    firsts = {s: {n.split()[0] for n in people[s]} for s in SPLITS}
    lasts = {s: {n.split()[-1] for n in people[s]} for s in SPLITS}
    for a, b in [("train", "validation"), ("train", "test"), ("validation", "test")]:
        assert not people[a] & people[b] and not firsts[a] & firsts[b] and not lasts[a] & lasts[b]
        assert not {x.context for x in _all(a)} & {x.context for x in _all(b)}
    assert len({b.uid for s in SPLITS for b in _all(s)}) == sum(len(_all(s)) for s in SPLITS)


def test_test_split_holds_phrasings_the_others_never_use():
    held = [facts.duties[-1] for facts in FACTS.values()] + [facts.tools[-1] for facts in FACTS.values()]
    seen = {s: " ".join(b.context for b in _all(s)) for s in SPLITS}
    assert all(phrase not in seen["train"] and phrase not in seen["validation"] for phrase in held)
    assert sum(phrase in seen["test"] for phrase in held) >= len(held) // 2
    assert TEMPLATES["first"]["opening"][-1] == "{name} here, writing from {city}."  # the last one: test only
    assert "here, writing from" in seen["test"] and "here, writing from" not in seen["train"] + seen["validation"]


def test_ten_times_the_named_template_variety():
    implied = sum(len(v) for style in TEMPLATES.values() for v in style.values())
    assert implied >= 10 * (len(NAMED_TEMPLATES) + 1)  # the named bios: 8 body templates + 1 first sentence


def test_pronoun_forms_are_consistent():
    for bio in _all("validation"):
        assert no_gendered_pronouns(bio.neutral), bio.neutral
        if bio.style.startswith("third"):
            assert not no_gendered_pronouns(bio.context), bio.context  # third-person bios use he/she
        if bio.style.startswith("first"):
            assert bio.context == bio.neutral and re.search(r"\bI\b", bio.context)
        assert bio.name in bio.context and bio.context[:bio.first_sentence_end].strip()


def test_generation_is_seeded_and_n_cuts_the_same_order():
    a, b = implied_biographies("test", 30, seed=2), implied_biographies("test", 30, seed=2)
    assert a == b and implied_biographies("test", 5, seed=2) == a[:5]
    assert {x.uid for x in implied_biographies("test", 30, seed=3)} != {x.uid for x in a}


def test_third_singular():
    assert [third_singular(p) for p in ("fix bugs", "carry bags", "play records", "have lunch", "do rounds",
                                         "teach form", "set up lights")] == \
        ["fixes bugs", "carries bags", "plays records", "has lunch", "does rounds", "teaches form", "sets up lights"]


def test_every_bio_task_runs_on_either_source():
    for name in ("json", "pronoun", "biasbios"):
        named, implied = get_task(name, bios="named"), get_task(name, bios="implied")
        assert get_task(name).examples("test", 5) == named.examples("test", 5)  # the default is unchanged
        assert named.examples("test", 5) == synthetic_biographies("test", 5)
        exs = implied.examples("validation", 6, seed=1)
        assert len(exs) == 6 and all(e.uid.startswith("implied:validation:") for e in exs)
        assert (named.data_key, implied.data_key) == (None, "implied")
        for ex in exs:
            assert "*" in implied.prompt(ex)
    pronoun = get_task("pronoun", bios="implied").examples("train", 200)
    assert all(not no_gendered_pronouns(b.context) for b in pronoun)  # something to change in every one
    with pytest.raises(ValueError, match="named"):
        get_task("json", bios="implicit")


def test_evaluation_rows_keep_the_sources_apart(llama, tmp_path):
    kw = dict(n=2, out_dir=tmp_path, progress=False, split="validation")
    named = evaluate(llama, [get_task("biasbios", bios="named")], ["zero-shot"], **kw)
    implied = evaluate(llama, [get_task("biasbios", bios="implied")], ["zero-shot"], **kw)
    assert {r["config"] for r in named.rows}.isdisjoint({r["config"] for r in implied.rows})
    assert implied.summary["config"]["task_data"] == {"biasbios": "implied"}
    assert all(r["uid"].startswith("implied:") for r in implied.rows)
    lines = (tmp_path / "examples.jsonl").read_text().splitlines()
    assert len(lines) == 4  # both sources kept side by side, none reused for the other


def test_cli_bios_options_and_defaults():
    from pasta_lens.cli import build_parser
    from pasta_lens.cli.evaluate import build_tasks
    from pasta_lens.cli.profile import recorded_command
    from pasta_lens.cli.profile_learned import learned_command

    profile = build_parser().parse_args(["profile", "--tasks", "json,counterfact", "--out", "p.json"])
    assert profile.bios == "implied" and "--bios implied" in recorded_command(profile)
    learned = build_parser().parse_args(["profile", "--method", "learned", "--bios", "named", "--out", "p.json"])
    assert "--bios named" in learned_command(learned)
    evaluate_args = build_parser().parse_args(["evaluate", "--tasks", "json", "--out", "d"])
    assert evaluate_args.bios == "named"
    tasks = build_tasks("json,biasbios,counterfact,instructions,context_qa", "implied")
    assert [t.data_key for t in tasks] == ["implied", "implied", None, None, None]
    assert [t.name for t in build_tasks("all")] == ["json", "pronoun", "biasbios", "counterfact"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["profile", "--bios", "real", "--out", "p.json"])
