"""Leave-one-task-out transfer (pasta_lens.evaluation.transfer) on a tiny random model."""

import dataclasses
import json

import pytest
import torch

from pasta_lens.evaluation import evaluate, leave_one_out_profiles, transfer
from pasta_lens.head_profile import HeadProfile
from pasta_lens.profiling import ablation_curve, choose_k, select_heads
from pasta_lens.tasks import get_task
from tests.test_evaluation import short_bios

TASKS = ("json", "pronoun", "biasbios")


def _profile(model, seed=0, held_scores=None):
    g = torch.Generator().manual_seed(seed)
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    scores = {t: torch.randn(shape, generator=g).tolist() for t in TASKS}
    if held_scores is not None:
        scores.update(held_scores)
    heads = select_heads({t: torch.tensor(v) for t, v in scores.items()}, 6, "intersection")
    return HeadProfile(model_name="tiny", n_layers=shape[0], n_heads=shape[1], heads=heads, tasks=TASKS, k=6,
                       strategy="intersection", method="attribution", scores=scores, n_examples={t: 4 for t in TASKS})


@pytest.fixture(scope="module")
def bio_tasks():
    bios = short_bios()
    return {t: get_task(t, bios=bios) for t in TASKS}


def test_held_out_profile_never_sees_its_task(llama, bio_tasks):
    profile = _profile(llama)
    held = leave_one_out_profiles(llama, profile, ks=[4, 8], val_n=2, progress=False, tasks=bio_tasks)
    assert set(held) == set(TASKS)
    for task, prof in held.items():
        others = [t for t in TASKS if t != task]
        assert prof.tasks == tuple(others) and set(prof.scores) == set(others) and prof.k in (4, 8)
        tables = {t: torch.tensor(profile.scores[t]) for t in others}
        assert prof.heads == select_heads(tables, prof.k, "intersection")  # the other tasks' top-k, nothing else
        val = {t: bio_tasks[t].profiling_examples(llama, split="validation", n=2) for t in others}
        assert prof.k == choose_k(ablation_curve(llama, tables, val, [4, 8], progress=False))
        record = prof.provenance["leave_one_out"]
        assert record["held_out"] == task and [p["k"] for p in record["ablation_curve"]] == [4, 8]
        assert "leave-one-out: selected without " + task in prof.method
        assert "schedule" not in prof.provenance  # the source recorded none: steered at every token, like it
    # a metric-selected source: its schedule is kept (like-for-like with the full profile), its selection record
    # (which describes how *its* heads were chosen) is not
    chosen = dataclasses.replace(profile, provenance={"schedule": "prompt", "selected_by": "metric",
                                                      "fluency_floor_met": True, "metric_curve": [], "split": "train"})
    for prof in leave_one_out_profiles(llama, chosen, ks=[4, 8], val_n=2, progress=False, tasks=bio_tasks).values():
        assert prof.provenance["schedule"] == "prompt" and prof.provenance["split"] == "train"
        assert not {"selected_by", "fluency_floor_met", "metric_curve"} & set(prof.provenance)
    # scrambling the held-out task's own scores changes nothing about its held-out profile
    scrambled = _profile(llama, held_scores={"json": (-torch.tensor(profile.scores["json"])).tolist()})
    again = leave_one_out_profiles(llama, scrambled, ks=[4, 8], val_n=2, progress=False, tasks=bio_tasks)
    assert again["json"].heads == held["json"].heads


def test_transfer_writes_table_and_matches_direct_evaluation(llama, bio_tasks, tmp_path):
    profile = _profile(llama)
    held = leave_one_out_profiles(llama, profile, ks=[4, 8], val_n=2, progress=False, tasks=bio_tasks)
    held = {"biasbios": held["biasbios"]}
    res = transfer(llama, profile, held, n=3, out_dir=tmp_path, progress=False, tasks=bio_tasks)
    direct = evaluate(llama, [bio_tasks["biasbios"]], ["pasta"], "test", 3, profile=held["biasbios"], progress=False)
    assert res.rows["biasbios"]["held-out"]["acc"] == direct.summary["tasks"]["biasbios"]["pasta"]["acc"]
    base = evaluate(llama, [bio_tasks["biasbios"]], ["zero-shot"], "test", 3, progress=False)
    assert res.rows["biasbios"]["zero-shot"]["acc"] == base.summary["tasks"]["biasbios"]["zero-shot"]["acc"]
    assert res.heads["biasbios"]["held-out"] == len(held["biasbios"].heads)
    table = (tmp_path / "table.md").read_text()
    assert table == res.table and table.count("| BiasBios |") == 1
    assert HeadProfile.load(tmp_path / "profiles" / "without-biasbios.json").heads == held["biasbios"].heads
    assert json.loads((tmp_path / "summary.json").read_text())["heads"]["biasbios"]["full"] == len(profile.heads)


def test_leave_one_out_needs_two_scored_tasks(llama):
    one = HeadProfile(model_name="tiny", n_layers=llama.cfg.n_layers, n_heads=llama.cfg.n_heads, heads=[(1, 0)],
                      tasks=("json",), scores={"json": torch.zeros(llama.cfg.n_layers, llama.cfg.n_heads).tolist()})
    with pytest.raises(ValueError, match="at least two tasks"):
        leave_one_out_profiles(llama, one, ks=[2], progress=False)


def test_cli_transfer_refuses_a_single_task_profile_before_loading(tmp_path, capsys):
    from pasta_lens.cli import main

    path = HeadProfile(model_name="tiny", n_layers=2, n_heads=2, heads=[(1, 0)], tasks=("json",),
                       scores={"json": [[0.0, 1.0], [2.0, 3.0]]}).save(tmp_path / "one.json")
    assert main(["transfer", "--profile", str(path), "--model", "no-such-model", "--out", str(tmp_path / "o")]) == 2
    assert "at least two tasks" in capsys.readouterr().err


def test_cli_transfer_takes_held_out_profiles_made_elsewhere(tmp_path, capsys):
    """--held-out TASK=PATH: a held-out profile made some other way (here by hand; in practice --method learned on
    the other tasks) is evaluated as given, only for the tasks named; one made with its task is refused, before
    the model loads."""
    from pasta_lens.cli import main
    from tests.tiny import tiny_hf_model

    model_dir = tmp_path / "tiny"
    hf, tok = tiny_hf_model("llama")
    hf.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    shape = dict(n_layers=hf.config.num_hidden_layers, n_heads=hf.config.num_attention_heads)
    zeros = [[0.0] * shape["n_heads"]] * shape["n_layers"]
    full = HeadProfile(model_name="tiny", **shape, heads=[(1, 0), (2, 1)], tasks=("json", "biasbios"),
                       scores={"json": zeros, "biasbios": zeros}).save(tmp_path / "full.json")
    without = HeadProfile(model_name="tiny", **shape, heads=[(2, 3)], head_alphas={(2, 3): 0.05}, tasks=("json",),
                          method="learned (by hand)").save(tmp_path / "without-biasbios.json")
    out = tmp_path / "loto"
    argv = ["transfer", "--profile", str(full), "--model", str(model_dir), "--n", "2", "--quiet", "--out", str(out)]
    assert main(argv + ["--held-out", f"biasbios={without}"]) == 0
    table = (out / "table.md").read_text()
    assert table.count("| BiasBios |") == 1 and "| JSON |" not in table
    assert "(1 heads) |" in table and "k=" not in table  # no top-k behind a learned profile: none is printed
    assert HeadProfile.load(out / "profiles" / "without-biasbios.json").head_alphas == {(2, 3): 0.05}
    capsys.readouterr()
    for spec, why in ((f"json={full}", "not held out"), (f"pronoun={without}", "not a task of --profile"),
                      ("biasbios", "TASK=PATH")):
        assert main(argv[:3] + ["--model", "no-such-model", "--out", str(out), "--held-out", spec]) == 2
        assert why in capsys.readouterr().err


def test_leave_one_out_refuses_a_strategy_that_does_not_combine_the_tasks(llama, bio_tasks):
    profile = _profile(llama)
    with pytest.raises(ValueError, match="combines the other tasks"):
        leave_one_out_profiles(llama, profile, ks=[4], val_n=1, strategy="task_specific", progress=False,
                               tasks=bio_tasks)
    with pytest.raises(ValueError, match=r"strategy must be one of .*got 'bogus'"):
        leave_one_out_profiles(llama, profile, ks=[4], val_n=1, strategy="bogus", progress=False, tasks=bio_tasks)
