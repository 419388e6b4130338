"""The steering schedule in the evaluation harness and the CLI (tiny random Llama, no downloads)."""

import json

import pytest

from pasta_lens import generate
from pasta_lens.cli import main
from pasta_lens.evaluation import ablation_methods, candidate_logprobs, evaluate, parse_method
from pasta_lens.generation import decode_new, generate_tokens
from pasta_lens.schedule import Schedule
from pasta_lens.steering import steer
from pasta_lens.tasks import Rendering, get_task
from pasta_lens.tasks.base import answer_ids, emphasis_of

HEADS = [(2, 1), (1, 0), (2, 3)]


def test_parse_method_takes_a_schedule():
    m = parse_method("pasta:schedule=first:4,alpha=0.1")
    assert (m.schedule, m.alpha, m.heads) == (Schedule("first", n=4), 0.1, "profile")
    assert m.label == "PASTA, profile heads (schedule=first:4,alpha=0.1)"
    assert parse_method("random:schedule=decay:0.5").schedule == Schedule("decay", gamma=0.5)
    assert parse_method("pasta").schedule is None  # the evaluation's default applies
    for bad, msg in [("zero-shot:schedule=prompt", "only apply"), ("pasta:schedule=sometimes", "Bad option"),
                     ("pasta:schedule=decay:3", "0 < G <= 1")]:
        with pytest.raises(ValueError, match=msg):
            parse_method(bad)


def test_ablation_methods_add_schedules_other_than_the_default():
    assert ablation_methods((), (), 0.01, ["prompt", "all", "first:4"]) == ["pasta:schedule=prompt",
                                                                             "pasta:schedule=first:4"]
    assert ablation_methods((), (), 0.01, ["all", "prompt"], default_schedule="prompt") == ["pasta:schedule=all"]


def _by_hand(model, task, example, spec, max_new):
    """The steered generation of one example's main query, without the harness."""
    q = task.queries(example, "default")[0]
    em = emphasis_of(model, [task.render(model, q.markup, Rendering("none", ()))])
    with steer(model, HEADS, em, 0.01, schedule=spec):
        return q.key, decode_new(model, generate_tokens(model, em, max_new))[0]


def test_evaluate_steers_each_method_with_its_schedule(llama):
    task = get_task("json")
    methods = ["pasta", "pasta:schedule=prompt", "pasta:schedule=first:1"]
    res = evaluate(llama, [task], methods, "validation", 2, heads=HEADS, batch_size=2, max_new_tokens=6,
                   progress=False)
    by = {(r["method"], r["uid"]): r for r in res.rows}
    assert len({r["config"] for r in res.rows}) == 3  # resume keeps the schedules apart
    for ex in task.examples("validation", 2):
        for method, spec in zip(methods, ["all", "prompt", "first:1"]):
            key, text = _by_hand(llama, task, ex, spec, 6)
            assert by[(method, ex.uid)]["outputs"][key] == text, (method, ex.uid)
    assert any(by[("pasta", ex.uid)]["outputs"] != by[("pasta:schedule=prompt", ex.uid)]["outputs"]
               for ex in task.examples("validation", 2))
    # an evaluation-wide default schedule applies to methods without their own, and is recorded
    default = evaluate(llama, [task], ["pasta"], "validation", 2, heads=HEADS, schedule="prompt", batch_size=2,
                       max_new_tokens=6, progress=False)
    assert [r["outputs"] for r in default.rows] == [by[("pasta:schedule=prompt", r["uid"])]["outputs"]
                                                     for r in default.rows]
    assert {r["config"] for r in default.rows} != {by[("pasta", r["uid"])]["config"] for r in default.rows}
    assert default.summary["config"]["schedule"] == "prompt" and res.summary["config"]["schedule"] is None
    assert default.summary["config"]["plans"]["pasta"].endswith("schedule: prompt")  # the plan each method steers
    assert res.summary["config"]["plans"]["pasta"].endswith("schedule: all")


def test_candidate_logprobs_under_a_schedule(llama):
    """Candidate tokens are continuation rows: 'prompt' leaves them unsteered; the first token is read at the
    prompt's last row, which every schedule steers."""
    task = get_task("json")
    ex = task.examples("validation", 1)[0]
    rendered = task.render(llama, task.queries(ex, "default")[0].markup, Rendering("none", ()))
    single, multi = " Paris", " software engineer ok"
    assert len(answer_ids(llama, single)) == 1 and len(answer_ids(llama, multi)) > 2
    every = candidate_logprobs(llama, rendered, [single, multi], heads=HEADS, alpha=1e-3)
    prompt = candidate_logprobs(llama, rendered, [single, multi], heads=HEADS, alpha=1e-3, schedule="prompt")
    plain = candidate_logprobs(llama, rendered, [single, multi])
    assert prompt[0] == every[0] != plain[0]
    assert prompt[1] != every[1]


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    from tests.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama")
    path = tmp_path_factory.mktemp("tiny_llama_schedule")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_cli_steer_schedule(saved_llama, capsys):
    from pasta_lens.models import load_model

    text = "Maria is a nurse who lives in Paris. *Answer in JSON.*"
    assert main(["steer", text, "--model", saved_llama, "--heads", "1:0,2:1", "--max-new-tokens", "8",
                 "--schedule", "prompt"]) == 0
    out = capsys.readouterr().out
    assert "schedule: prompt" in out
    steered = out.split("=== steered ===\n", 1)[1].rstrip("\n")
    model = load_model(saved_llama)
    assert steered == generate(model, text, [(1, 0), (2, 1)], max_new_tokens=8, schedule="prompt")
    with pytest.raises(SystemExit):  # argparse usage error, naming the accepted forms
        main(["steer", text, "--model", saved_llama, "--schedule", "sometimes"])
    assert "first:N" in capsys.readouterr().err


def test_cli_evaluate_schedules(saved_llama, tmp_path):
    out = tmp_path / "run"
    assert main(["evaluate", "--model", saved_llama, "--tasks", "json", "--heads", "1:0,2:1",
                 "--baselines", "pasta", "--schedule", "first:1", "--schedules", "prompt,first:1",
                 "--split", "validation", "--n", "1", "--max-new-tokens", "3", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in rows) == ["pasta", "pasta:schedule=prompt"]  # first:1 is the default
    assert json.loads((out / "summary.json").read_text())["config"]["schedule"] == "first:1"
