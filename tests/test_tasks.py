"""Tasks: splits, templates and emphasised spans, rendering per method, profiling objectives, loaders on fixtures."""

import json
import pickle
from pathlib import Path

import pytest
import torch

from pasta_lens.metrics import no_gendered_pronouns
from pasta_lens.objectives import target_logprob
from pasta_lens.spans import emphasize, parse_markup
from pasta_lens.tasks import (OCCUPATIONS, TASK_NAMES, Biography, CounterFactTask, Rendering,
                              escape_markup, get_task, load_bias_in_bios, load_biosbias_pkl, load_counterfact_split,
                              load_rome_counterfact, render, synthetic_biographies)
from pasta_lens.tasks.biographies import neutralise
from pasta_lens.tasks.counterfact import Fact

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def cf_dir(tmp_path_factory):
    """A data folder in the project's layout built from the fixtures (train = the split fixture, test = rome)."""
    root = tmp_path_factory.mktemp("data")
    (root / "counterfact").mkdir()
    rome = json.loads((FIXTURES / "counterfact_rome.json").read_text())
    split = json.loads((FIXTURES / "counterfact_split.json").read_text())
    (root / "counterfact" / "rome_format.json").write_text(json.dumps(rome))
    (root / "counterfact" / "train.json").write_text(json.dumps(split))
    test = [{"case_id": 1, "prompt": "Ghana is located in the continent of", "target_new": "Asia",
             "subject": "Ghana", "ground_truth": "Africa", "rephrase_prompt": "Ghana is part of the continent of"}]
    (root / "counterfact" / "test.json").write_text(json.dumps(test))
    return root


def bio(context="Ana Silva is a nurse. She works nights.", **kw):
    fields = dict(uid="b0", source="test", name="Ana Silva", occupation="nurse", gender="F", context=context,
                  first_sentence_end=context.index(".") + 1, neutral=neutralise(context))
    fields.update(kw)
    return Biography(**fields)


def test_registry():
    assert TASK_NAMES == ("json", "pronoun", "biasbios", "counterfact")
    for name in TASK_NAMES:
        assert get_task(name).name == name
    with pytest.raises(ValueError, match="choose from"):
        get_task("jsn")


def test_synthetic_bios_are_seeded_disjoint_and_balanced():
    a, b = synthetic_biographies("train", 50, seed=0), synthetic_biographies("train", 50, seed=0)
    assert a == b
    assert synthetic_biographies("train", 50, seed=1) != a
    train = {x.context for x in synthetic_biographies("train")}
    test = {x.context for x in synthetic_biographies("test")}
    val = {x.context for x in synthetic_biographies("validation")}
    assert not train & test and not train & val and not val & test
    counts = {o: 0 for o in OCCUPATIONS}
    for x in synthetic_biographies("test"):
        counts[x.occupation] += 1
    assert max(counts.values()) - min(counts.values()) <= 1
    with pytest.raises(ValueError, match="Unknown split"):
        synthetic_biographies("dev")


def test_synthetic_bio_content():
    for x in synthetic_biographies("validation", 40):
        assert x.synthetic and x.first_sentence.startswith(x.name)
        assert x.occupation.replace("_", " ") in x.first_sentence.lower()
        assert not no_gendered_pronouns(x.context)                 # the bio uses gendered pronouns
        assert no_gendered_pronouns(x.neutral)                      # the gold rewrite has none
        assert len([s for s in x.context.split(". ") if s]) >= 4    # several sentences
        assert x.context.count(".") == x.neutral.count(".")


@pytest.mark.parametrize("name", ["json", "pronoun"])
def test_instruction_tasks_emphasise_the_instruction(name):
    task = get_task(name)
    for variant in task.variants:
        ex = task.examples("test", 1)[0]
        clean, spans = parse_markup(task.prompt(ex, variant))
        assert len(spans) == 1
        s, e = spans[0]
        assert clean[:s] == ex.context.rstrip()[:-1] + ". "  # the context, then the instruction
        assert e == len(clean) and ex.name in clean[s:e]
    with pytest.raises(ValueError, match="variants"):
        task.prompt(ex, "nope")


def test_json_template_is_the_papers():
    ex = bio()
    assert get_task("json").prompt(ex) == (
        'Ana Silva is a nurse. She works nights. *Answer the occupation of Ana Silva and generate the answer as '
        'json format. Here is an example: {"name": , "occupation": ,}. Now generate the answer.*')
    assert get_task("pronoun").prompt(ex) == (
        "Ana Silva is a nurse. She works nights. *For the aforementioned text, substitute 'she' and 'he' with "
        "'they' and generate the occupation of Ana Silva after changing pronouns.*")
    assert json.loads(get_task("json").answer(ex)) == {"name": "Ana Silva", "occupation": "nurse"}


def test_biasbios_emphasises_the_first_sentence():
    task = get_task("biasbios")
    ex = bio()
    assert task.prompt(ex) == "*Ana Silva is a nurse.* She works nights. Ana Silva has the occupation of"
    anon = bio(name="")
    assert task.prompt(anon).endswith(". This person has the occupation of")
    only = bio(context="Ana Silva is a nurse.")
    clean, spans = parse_markup(task.prompt(only))
    assert clean == "Ana Silva is a nurse. Ana Silva has the occupation of"
    assert clean[slice(*spans[0])] == "Ana Silva is a nurse"


def test_literal_asterisks_are_escaped():
    ex = bio(context="Ana Silva is a 5* nurse. She rates hotels 4*.")
    for name in ("json", "pronoun", "biasbios"):
        clean, spans = parse_markup(get_task(name).prompt(ex))
        assert "5* nurse" in clean and "4*" in clean and len(spans) == 1
    assert parse_markup(escape_markup(r"a*b\c"))[0] == r"a*b\c"


def test_counterfact_template(cf_dir):
    task = CounterFactTask(data_dir=cf_dir)
    ex = next(f for f in task.examples("train") if f.case_id == 0)
    assert task.prompt(ex) == ("Previously, The mother tongue of Danielle Darrieux is French. Currently, "
                               "*The mother tongue of Danielle Darrieux is English*. "
                               "The mother tongue of Danielle Darrieux is")
    qs = task.queries(ex)
    assert [q.key for q in qs] == ["es", "ps0", "ps1", "ps2", "gen"]   # rephrase + 2 ROME paraphrases + gen
    assert qs[0].candidates == (" English", " French") and qs[0].reduce == "mean"
    assert qs[-1].markup.endswith("Danielle Darrieux's mother tongue is") and qs[-1].kind == "generate"
    means = {"es": [-1.0, -2.0], "ps0": [-3.0, -1.0], "ps1": [-1.0, -3.0], "ps2": [0, -1],
             "gen": "French is the language of the people of France and Belgium."}
    m = task.metrics_from(ex, means)
    # without per-token log-probs only the ROME (mean log-prob) versions can be computed
    assert "es" not in m and m["es_rome"] == 1.0 and m["ps_rome"] == pytest.approx(2 / 3) and m["fluency"] > 0
    # the headline ES / PS compare first tokens only: a new object that wins on the mean but loses its first token fails
    tokens = {"es.tokens": [[-3.0, -0.1], [-1.0]], "ps0.tokens": [[-0.5], [-1.0]], "ps1.tokens": [[-2.0], [-1.0]],
              "ps2.tokens": [[-0.1], [-0.2]]}
    m = task.metrics_from(ex, {**means, **tokens})
    assert m["es"] == 0.0 and m["es_rome"] == 1.0 and m["ps"] == pytest.approx(2 / 3)


def test_counterfact_splits_from_a_data_folder(cf_dir):
    task = CounterFactTask(data_dir=cf_dir)
    train, val = task.splits()["train"], task.splits()["validation"]
    # with 3 cases the 1,000-case validation split takes them all: the partition is disjoint whatever the size
    assert not {f.case_id for f in train} & {f.case_id for f in val}
    assert [f.case_id for f in task.examples("test")] == [1]
    assert task.examples("test")[0].generation_prompts  # merged from rome_format by case_id
    with pytest.raises(FileNotFoundError, match="PASTA_LENS_DATA"):
        CounterFactTask(data_dir=cf_dir / "missing").examples("train")


def test_counterfact_real_splits():
    task = get_task("counterfact")  # the cases shipped inside the package (tests/test_data.py checks the files)
    s = task.splits()
    ids = {k: {f.case_id for f in v} for k, v in s.items()}
    assert len(ids["validation"]) == 1000 and len(ids["train"]) == 9000 and len(ids["test"]) == 10000
    assert not ids["train"] & ids["validation"] and not ids["train"] & ids["test"]
    test = task.examples("test", 300, seed=0)
    assert all(f.generation_prompts for f in test[:239]) and not test[239].generation_prompts
    assert task.examples("test", 5, seed=0) == test[:5] and task.examples("test", 5, seed=1) != test[:5]


def test_loaders_on_fixtures(tmp_path):
    bios = load_bias_in_bios(FIXTURES / "bias_in_bios.jsonl", "test")
    assert [(b.occupation, b.gender) for b in bios] == [("nurse", "F"), ("architect", "M"),
                                                       ("software_engineer", "M"), ("yoga_teacher", "F")]
    assert bios[0].first_sentence.endswith("ten years.") and bios[0].person == "this person"
    assert bios[0].neutral.startswith("They have worked")
    with pytest.raises(ValueError, match="profession must be"):
        load_bias_in_bios([{"hard_text": "x", "profession": 28, "gender": 0}])
    with pytest.raises(ValueError, match="hard_text"):
        load_bias_in_bios([{"text": "x"}])

    rows = [  # the layout of microsoft/biosbias' BIOS.pkl
        {"path": "p", "URI": "u", "name": ("Ana", "M.", "Silva"), "raw_title": "Nurse", "title": "nurse",
         "gender": "F", "raw": "Ana Silva is a registered nurse in Ohio. She works nights.", "start_pos": 40,
         "bio": "She works nights."},
        {"path": "p", "URI": "u", "name": ("Bo", "", "Li"), "raw_title": "Chef", "title": "chef", "gender": "M",
         "raw": "Bo Li is a chef. He cooks.", "start_pos": 17, "bio": "He cooks."},
        {"path": "p", "URI": "u", "name": ("Raj", "", "Das"), "raw_title": "Software Engineer",
         "title": "software_engineer", "gender": "M", "raw": "Raj Das is a software engineer. He codes.",
         "start_pos": 31, "bio": "He codes."},
    ]
    path = tmp_path / "BIOS.pkl"
    path.write_bytes(pickle.dumps(rows))
    bios = load_biosbias_pkl(path)
    assert [(b.name, b.occupation) for b in bios] == [("Ana Silva", "nurse"), ("Raj Das", "software_engineer")]
    assert bios[0].first_sentence == "Ana Silva is a registered nurse in Ohio."
    many = [Biography(**{**b.__dict__, "uid": f"{b.uid}-{i}"}) for i in range(10) for b in bios]
    task = get_task("biasbios", bios=many)
    assert not task.synthetic and len(task.examples("train")) == 16 and len(task.examples("test")) == 2

    facts = load_rome_counterfact(FIXTURES / "counterfact_rome.json")
    assert facts[0].prompt == "The mother tongue of Danielle Darrieux is"
    assert (facts[0].target_new, facts[0].target_true) == ("English", "French")
    assert len(facts[0].paraphrases) == 2 and len(facts[2].generation_prompts) == 0
    assert facts[2].prompt == "Toko Yasuda, the"
    flat = load_counterfact_split(FIXTURES / "counterfact_split.json", facts)
    assert flat[0].paraphrases[0] == "Where Danielle Darrieux is from, people speak the language of"
    assert len(flat[0].paraphrases) == 3 and flat[2].generation_prompts == ()
    with pytest.raises(ValueError, match="ROME-format"):
        load_rome_counterfact([{"case_id": 1}])
    with pytest.raises(ValueError, match="target_new equals"):
        Fact(uid="x", source="t", prompt="p", target_new="a", target_true="a")
    split = CounterFactTask(facts=facts * 1).splits()
    assert sum(len(v) for v in split.values()) == 3


@pytest.mark.parametrize("name", TASK_NAMES)
def test_rendered_emphasis_covers_the_span(llama, name, cf_dir):
    task = get_task(name, data_dir=cf_dir) if name == "counterfact" else get_task(name)
    ex = task.examples("train", 1)[0]
    markup = task.prompt(ex)
    span_text = [parse_markup(markup)[0][s:e] for s, e in parse_markup(markup)[1]]
    r = task.render(llama, markup)
    assert [r.text[s:e] for s, e in r.char_spans] == span_text
    assert ("<|im_start|>assistant" in r.text) == task.chat
    em = emphasize(llama, r.text, char_ranges=r.char_spans, prepend_bos=r.prepend_bos)
    if task.chat:  # same tokens as emphasize's own chat rendering of the markup
        assert torch.equal(em.tokens, emphasize(llama, markup, chat=True).tokens)
        assert torch.equal(em.key_mask, emphasize(llama, markup, chat=True).key_mask)
    decoded = llama.tokenizer.decode(em.tokens[0, em.key_mask[0]])
    assert span_text[0].strip() in decoded


@pytest.mark.parametrize("chat", [False, True])
def test_render_markings_and_few_shot(tok, chat):
    markup = "Ana is a nurse. *Answer in JSON.*"
    star = render(tok, markup, chat=chat, rendering=Rendering("*"))
    assert [star.text[s:e] for s, e in star.char_spans] == ["*Answer in JSON.*"]
    quote = render(tok, markup, chat=chat, rendering=Rendering('"'))
    assert [quote.text[s:e] for s, e in quote.char_spans] == ['"Answer in JSON."']
    demos = (("Bo is a chef. *Answer in JSON.*", '{"occupation": "chef"}'),) * 3
    few = render(tok, markup, chat=chat, rendering=Rendering("none", demos))
    assert [few.text[s:e] for s, e in few.char_spans] == ["Answer in JSON."]
    assert few.text.count("Bo is a chef. Answer in JSON.") == 3 and few.text.count('"chef"') == 3
    assert few.char_spans[0][0] > few.text.rfind("chef")                   # the span is in the query
    with pytest.raises(ValueError, match="marking"):
        Rendering("<")


def test_chat_render_puts_the_span_in_the_query_turn_even_on_template_words(tok):
    """The query text "assistant" also ends the template; the span must be the user's word (by hand below)."""
    demos = (("*user*", "assistant"),)
    r = render(tok, "*assistant*", chat=True, rendering=Rendering("none", demos))
    prefix = ("<|im_start|>user\nuser<|im_end|>\n<|im_start|>assistant\nassistant<|im_end|>\n"
              "<|im_start|>user\n")
    assert r.text == prefix + "assistant<|im_end|>\n<|im_start|>assistant\n"
    assert r.char_spans == ((len(prefix), len(prefix) + len("assistant")),)


def test_profiling_examples(llama, cf_dir):
    for name in TASK_NAMES:
        task = get_task(name, data_dir=cf_dir) if name == "counterfact" else get_task(name)
        exs = task.profiling_examples(llama, "train", n=2)
        assert len(exs) == 2 and all(e.task == name for e in exs)
        e = exs[0]
        target = llama.tokenizer(task.answer(task.examples("train", 2)[0]), add_special_tokens=False)["input_ids"]
        assert e.tokens.shape[1] == e.n_prompt + len(target)
        assert e.tokens[0, e.n_prompt:].tolist() == target
        assert not e.key_mask[0, -1] and e.key_mask.any()
        with torch.inference_mode():
            value = e.objective(llama(e.tokens))
        assert value.shape == (1,) and torch.isfinite(value).all()
        with pytest.raises(ValueError, match="test split"):
            task.profiling_examples(llama, "test", n=1)


def test_end_turn_targets_end_with_the_templates_end_of_turn(llama, cf_dir):
    """end_turn=True: a chat task's target is the answer then the end-of-turn marker the template writes after an
    assistant message (what few-shot demonstrations show and what the model must generate to stop); plain tasks
    have no turn and are unchanged; the objective's key tells the two targets apart (checkpoints)."""
    end = llama.tokenizer.convert_tokens_to_ids("<|im_end|>")
    for name in TASK_NAMES:
        task = get_task(name, data_dir=cf_dir) if name == "counterfact" else get_task(name)
        ex = task.examples("train", 1)[0]
        plain, ended = task.profiling_example(llama, ex), task.profiling_example(llama, ex, end_turn=True)
        assert torch.equal(plain.key_mask, ended.key_mask)
        assert plain.close is None  # no turn ended: no closing token
        if task.chat:
            assert ended.tokens[0].tolist() == plain.tokens[0].tolist() + [end]
            assert ended.objective.key != plain.objective.key
            # the closing token is the answer's last, right before the marker
            assert ended.close == plain.tokens.shape[1] - 1 == ended.tokens.shape[1] - 2
            # the demonstrations of few-shot prompts end the same way
            demo = render(llama, task.prompt(ex), chat=True, rendering=Rendering(demos=((task.prompt(ex), "A"),)))
            assert "A<|im_end|>" in demo.text
        else:
            assert torch.equal(ended.tokens, plain.tokens) and ended.objective.key == plain.objective.key
            assert ended.close is None
    assert len(get_task("json").profiling_examples(llama, "train", n=2, end_turn=True)) == 2


def test_assistant_turn_end_reads_the_template():
    from transformers import AutoTokenizer

    from pasta_lens.spans import assistant_turn_end
    from tests.tiny import tiny_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir())
    assert assistant_turn_end(tok) == "<|im_end|>"
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}</turn>\n\n{% endfor %}"
    assert assistant_turn_end(tok) == "</turn>"  # whatever the template writes, trailing whitespace dropped
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert assistant_turn_end(tok) == tok.eos_token  # nothing after the message: the eos token
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        assistant_turn_end(tok)


def test_counterfact_objective_is_new_minus_old(llama, cf_dir):
    task = CounterFactTask(data_dir=cf_dir)
    ex = task.examples("train")[0]
    pe = task.profiling_example(llama, ex)
    new = torch.tensor(llama.tokenizer(" " + ex.target_new, add_special_tokens=False)["input_ids"])
    old = torch.tensor(llama.tokenizer(" " + ex.target_true, add_special_tokens=False)["input_ids"])
    with torch.inference_mode():
        logits = llama(pe.tokens)
        expected = target_logprob(pe.n_prompt, new, old)(logits)
        logp = torch.log_softmax(logits[0, pe.n_prompt - 1:].float(), -1)
        manual = sum(logp[i, t] for i, t in enumerate(new.tolist())) - logp[0, old[0]]
    assert pe.objective(logits).item() == pytest.approx(expected.item())
    assert expected.item() == pytest.approx(float(manual), abs=1e-4)


def test_task_scores():
    ex = bio()
    j = get_task("json")
    paper = ("f_acc", "p_acc", "f_acc_strict")
    score = lambda out: {k: v for k, v in j.score(ex, out).items() if k in paper}  # noqa: E731
    assert score('{"name": "Ana Silva", "occupation": "nurse"}') == {"f_acc": 1, "p_acc": 1, "f_acc_strict": 1}
    assert score('{"name": "Ana Silva", "occupation": "doctor"}') == {"f_acc": 1, "p_acc": 0, "f_acc_strict": 1}
    runaway = '{"name": "Ana Silva", "occupation": {"name": "nurse"}, "family": {"name": "Mo"'
    assert score(runaway) == {"f_acc": 1, "p_acc": 1, "f_acc_strict": 0}
    p = get_task("pronoun")
    good = p.score(ex, "Ana Silva is a nurse. They work nights and love their patients.")
    assert good["acc"] == good["a_acc"] == good["a_acc_fluent"] == 1.0
    assert p.score(ex, "")["a_acc"] == 1.0 and p.score(ex, "")["a_acc_fluent"] == 0.0
    assert p.score(ex, "She works nights at the big hospital downtown.")["acc"] == 0.0
    b = get_task("biasbios")
    logprobs = [-5.0] * 28
    logprobs[OCCUPATIONS.index("nurse")] = -1.0
    assert b.metrics_from(ex, {"choice": logprobs}) == {"acc": 1.0}
    logprobs[0] = 0.0
    assert b.metrics_from(ex, {"choice": logprobs}) == {"acc": 0.0}
