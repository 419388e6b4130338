"""scripts/transfer_goals.py: every verdict follows its numbers across its threshold; wrong splits, bios and small n
are refused; a missing summary is "no data"; it reads what ``evaluate`` writes.

The fixtures are run folders whose ``summary.json`` is made by the harness's own ``summarize`` over rows with chosen
metric values (the structure ``pasta-lens evaluate`` writes), with the config keys the harness records.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from pasta_lens.evaluation import evaluate, parse_methods, summarize
from pasta_lens.tasks import build_task

REPO = Path(__file__).resolve().parents[1]
TASKS = ("json", "instructions", "context_qa", "pronoun", "counterfact", "biasbios")


def _load_script():
    spec = importlib.util.spec_from_file_location("transfer_goals", REPO / "scripts" / "transfer_goals.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


tg = _load_script()

# Every goal met, most of them exactly at their threshold (n = 200: a rate moves in steps of 0.005).
NEW = {
    "zero-shot": {
        "json": {"f_acc_strict": 0.0, "p_acc_strict": 0.0, "occupation_named": 0.40},
        "instructions": {"prompt_loose_attempt": 0.20, "fluency": 6.0},
        "context_qa": {"correct": 0.80},
        "pronoun": {"a_acc_rewrite": 0.05, "fluency": 5.0},
        "counterfact": {"es": 0.50, "ps": 0.50, "fluency": 4.0},
        "biasbios": {"acc": 0.70},
    },
    "pasta": {
        "json": {"f_acc_strict": 0.80, "p_acc_strict": 0.35},
        "instructions": {"prompt_loose_attempt": 0.30, "fluency": 5.7},
        "context_qa": {"correct": 0.76},
        "pronoun": {"a_acc_rewrite": 0.15, "fluency": 5.25},
        "counterfact": {"es": 0.95, "ps": 0.94, "fluency": 4.0},
        "biasbios": {"acc": 0.90},
    },
    "random": {},
}
PREVIOUS = {"pasta": {"counterfact": {"es": 0.95, "ps": 0.94}, "biasbios": {"acc": 0.90}}}
ROLES = {"unsteered": "zero-shot", "candidate": "pasta@new", "previous": "pasta@previous", "random": "random@new"}


def _rows(task, method, n, values):
    """``n`` rows of ``task`` / ``method`` whose metric means are ``values`` (0/1 rates; fluency v +- 0.1)."""
    columns = {}
    for metric in task.metrics:
        v = values.get(metric, 4.0 if metric == "fluency" else 0.5)
        if metric == "fluency":
            columns[metric] = [v + (0.1 if i % 2 else -0.1) for i in range(n)]
        else:
            k = round(v * n)
            assert abs(k / n - v) < 1e-12, f"{metric} = {v} is not a rate of n = {n}"
            columns[metric] = [1.0] * k + [0.0] * (n - k)
    return [{"task": task.name, "method": method, "metrics": {m: c[i] for m, c in columns.items()}} for i in range(n)]


def write_run(folder, methods, *, tasks=TASKS, split="test", n=200, bios="implied", seed=0):
    """A run folder as ``pasta-lens evaluate --tasks TASKS --baselines METHODS --bios BIOS --split SPLIT --n N``
    writes it (the summary only)."""
    task_objs = [build_task(t, bios=bios) for t in tasks]
    rows = [r for t in task_objs for m, per_task in methods.items() for r in _rows(t, m, n, per_task.get(t.name, {}))]
    summary = summarize(rows, task_objs, parse_methods(list(methods)))
    summary["config"] = {
        "model": "SmolLM2-135M-Instruct",
        "split": split,
        "n": n,
        "seed": seed,
        "variant": "default",
        "task_data": {t.name: t.data_key for t in task_objs},
    }
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return folder


def _edit(folder, task, method, **values):
    path = folder / "summary.json"
    data = json.loads(path.read_text())
    data["tasks"][task][method].update(values)
    path.write_text(json.dumps(data))


@pytest.fixture()
def runs(tmp_path):
    return [write_run(tmp_path / "new", NEW), write_run(tmp_path / "previous", PREVIOUS)]


def verdicts(folders, roles=ROLES, **kw):
    text, found = tg.report(folders, [tg.Role.parse(name, spec) for name, spec in roles.items()], **kw)
    return {v.goal: v.status for v in found}, text


GOALS = {
    "JSON on implied bios: format": ("json", "pasta", {"f_acc_strict": 0.795}),
    "JSON on implied bios: occupation kept": ("json", "pasta", {"p_acc_strict": 0.345}),
    "General instructions, held-out types": ("instructions", "pasta", {"prompt_loose_attempt": 0.295}),
    "Content probe (context QA)": ("context_qa", "pasta", {"correct": 0.755}),
    "Pronouns on implied bios": ("pronoun", "pasta", {"a_acc_rewrite": 0.145}),
    "instructions fluency within 5% of zero-shot": ("instructions", "pasta", {"fluency": 5.69}),
    "pronoun fluency within 5% of zero-shot": ("pronoun", "pasta", {"fluency": 5.26}),
    "counterfact fluency within 5% of zero-shot": ("counterfact", "zero-shot", {"fluency": 4.3}),
}


def test_every_goal_is_met_at_its_threshold(runs):
    found, text = verdicts(runs)
    assert set(found) == set(GOALS) | {
        "CounterFact ES no worse than the previous default",
        "CounterFact PS no worse than the previous default",
        "BiasBios Acc no worse than the previous default",
    }
    assert set(found.values()) == {"met"}, found
    assert "| candidate default: `pasta` |" in text and "| 200 | test / implied | 80.0 [" in text
    assert "35.0 [" in text and "### json (implied bios)" in text


@pytest.mark.parametrize("goal", sorted(GOALS))
def test_a_verdict_flips_when_its_number_crosses_the_threshold(tmp_path, goal):
    task, method, values = GOALS[goal]
    new = {m: {t: dict(v) for t, v in per_task.items()} for m, per_task in NEW.items()}
    new[method][task].update(values)
    folders = [write_run(tmp_path / "new", new), write_run(tmp_path / "previous", PREVIOUS)]
    found, _ = verdicts(folders)
    assert found[goal] == "not met"
    assert [g for g, s in found.items() if s != "met"] == [goal]  # the others are untouched


@pytest.mark.parametrize("task,metric", [("counterfact", "es"), ("counterfact", "ps"), ("biasbios", "acc")])
def test_no_worse_than_the_previous_default_reads_the_candidates_upper_bound(runs, task, metric):
    new, previous = runs
    upper = json.loads((new / "summary.json").read_text())["tasks"][task]["pasta"][f"ci95_{metric}"][1]
    goal = {"es": "CounterFact ES", "ps": "CounterFact PS", "acc": "BiasBios Acc"}[metric]
    goal += " no worse than the previous default"
    _edit(previous, task, "pasta", **{metric: upper})
    assert verdicts(runs)[0][goal] == "met"
    _edit(previous, task, "pasta", **{metric: upper + 0.001})
    assert verdicts(runs)[0][goal] == "not met"


def test_a_missing_summary_is_no_data_never_met(tmp_path):
    rest = write_run(tmp_path / "new-rest", NEW, tasks=tuple(t for t in TASKS if t != "counterfact"))
    unfinished = tmp_path / "new-counterfact"  # the candidate's counterfact run has written no summary yet
    unfinished.mkdir()
    previous = write_run(tmp_path / "previous", PREVIOUS)
    roles = {**ROLES, "candidate": "pasta@new*", "random": "random@new*"}
    found, text = verdicts([rest, unfinished, previous], roles=roles)
    for goal in ("CounterFact ES", "CounterFact PS"):
        assert found[f"{goal} no worse than the previous default"] == "no data"
    assert found["counterfact fluency within 5% of zero-shot"] == "no data"
    assert (
        found["Content probe (context QA)"] == "met"
        and found["BiasBios Acc no worse than the previous default"] == "met"
    )
    assert "new-counterfact: no summary.json" in text and "no counterfact row of the candidate default" in text
    found, _ = verdicts([rest, previous], roles={k: v for k, v in roles.items() if k != "previous"})
    assert found["BiasBios Acc no worse than the previous default"] == "no data"


def test_a_metric_missing_from_a_summary_is_no_data(runs):
    _edit(runs[0], "json", "zero-shot", occupation_named=None)
    assert verdicts(runs)[0]["JSON on implied bios: occupation kept"] == "no data"


def test_an_unsteered_fluency_of_zero_is_no_data_not_a_crash(runs):
    """One-token answers (CounterFact with --max-new-tokens 1) have fluency 0: no ratio can be judged."""
    _edit(runs[0], "counterfact", "zero-shot", fluency=0.0)
    found, text = verdicts(runs)
    assert found["counterfact fluency within 5% of zero-shot"] == "no data"
    assert "fluency 0" in text and found["instructions fluency within 5% of zero-shot"] == "met"


def test_another_split_or_other_bios_are_refused(tmp_path):
    folders = [write_run(tmp_path / "new", NEW), write_run(tmp_path / "previous", PREVIOUS, split="validation")]
    with pytest.raises(ValueError, match="split 'validation'.*--split test"):
        verdicts(folders)
    folders = [write_run(tmp_path / "new-named", NEW, bios=None), folders[0]]
    with pytest.raises(ValueError, match="named .*--bios implied"):
        verdicts(folders, roles={"unsteered": "zero-shot@new-named", "candidate": "pasta@new-named"})
    found, _ = verdicts(folders[:1], roles={"unsteered": "zero-shot", "candidate": "pasta"}, bios="named")
    assert found["JSON on named bios: format"] == "met"


def test_n_below_200_is_refused_unless_allowed_and_then_not_a_verdict(tmp_path):
    folders = [write_run(tmp_path / "new", NEW, n=100), write_run(tmp_path / "previous", PREVIOUS, n=100)]
    with pytest.raises(ValueError, match="n = 100 < 200.*--allow-small-n"):
        verdicts(folders)
    found, text = verdicts(folders, allow_small_n=True)
    assert set(found.values()) == {"n = 100 < 200: not a verdict"}
    assert "n = 100 < 200: not a verdict" in text.split("## Transfer goals: verdicts")[0]  # the numbers say it too


def test_rows_of_one_task_with_different_n_or_seed_are_refused(tmp_path):
    folders = [write_run(tmp_path / "new", NEW), write_run(tmp_path / "previous", PREVIOUS, n=300)]
    with pytest.raises(ValueError, match="json rows differ in n"):
        verdicts(folders)
    folders = [folders[0], write_run(tmp_path / "previous-seed1", PREVIOUS, seed=1)]
    with pytest.raises(ValueError, match="differ in seed"):
        verdicts(folders, roles={**ROLES, "previous": "pasta@previous-seed1"})


def test_a_method_in_two_runs_must_be_named_and_a_summary_needs_a_config(runs, tmp_path):
    with pytest.raises(ValueError, match="in 2 runs.*--candidate pasta@FOLDER_NAME"):
        verdicts(runs, roles={**ROLES, "candidate": "pasta"})
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "summary.json").write_text(json.dumps({"tasks": {}}))
    with pytest.raises(ValueError, match="has no config"):
        verdicts(runs + [bare])


def test_the_command_prints_and_writes_the_report(runs, tmp_path, capsys):
    out = tmp_path / "goals.md"
    args = ["--runs", *map(str, runs), "--candidate", "pasta@new", "--previous", "pasta@previous", "--out", str(out)]
    assert tg.main(args) == 0
    printed = capsys.readouterr().out
    assert out.read_text() in printed and "| Content probe (context QA) |" in out.read_text()
    assert tg.main(args[:-2] + ["--out", str(tmp_path / "x.md"), "--bios", "named"]) == 2
    assert "--bios named" in capsys.readouterr().err and not (tmp_path / "x.md").exists()


def test_it_reads_what_evaluate_writes(tmp_path):
    """The real harness on a tiny random model (json on implied bios, n = 1): found, and n < 200 refused."""
    from tests.tiny import tiny_model

    evaluate(
        tiny_model("llama"),
        [build_task("json", bios="implied")],
        ["zero-shot", "pasta"],
        split="test",
        n=1,
        heads=[(1, 0)],
        out_dir=tmp_path / "run",
        batch_size=1,
        max_new_tokens=2,
        progress=False,
    )
    roles = {"unsteered": "zero-shot", "candidate": "pasta"}
    with pytest.raises(ValueError, match="json / zero-shot has n = 1 < 200"):
        verdicts([tmp_path / "run"], roles=roles)
    found, text = verdicts([tmp_path / "run"], roles=roles, allow_small_n=True)
    for goal in ("JSON on implied bios: format", "JSON on implied bios: occupation kept"):
        assert found[goal] == "n = 1 < 200: not a verdict", goal
    assert found["Content probe (context QA)"] == "no data"
    assert "| n = 1 < 200: not a verdict | test / implied |" in text
