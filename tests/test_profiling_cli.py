"""`pasta-lens profile` pieces on tiny models: the multi-task driver, the recorded command, the plot command."""

import pytest
import torch

from pasta_lens.cli import build_parser, main
from pasta_lens.profiling import make_profile, profile_heads, profile_tasks
from pasta_lens.cli.profile import recorded_command
from pasta_lens.cli.profile_preset import apply_preset
from pasta_lens.plot import plot_profile
from tests.test_profiling import counterfact_examples


def test_profile_tasks_checkpoints_each_task(llama, tmp_path):
    examples = {"cf_a": counterfact_examples(llama, n=2), "cf_b": counterfact_examples(llama, n=2, start=5)}
    scores = profile_tasks(llama, examples, "attribution", checkpoint_dir=tmp_path / "ck", progress=False)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["cf_a.ckpt", "cf_b.ckpt"]
    single = profile_heads(llama, examples["cf_b"], "attribution", progress=False)
    assert torch.equal(scores["cf_b"].scores, single.scores)
    with pytest.raises(ValueError, match="at least one task"):
        profile_tasks(llama, {}, progress=False)


def test_recorded_command_parses_back_to_the_same_arguments():
    argv = ["profile", "--model", "smollm2-135m-instruct", "--tasks", "json,counterfact", "--n", "50",
            "--method", "hybrid", "--rescore-n", "10", "--k", "auto", "--out", "profiles/x.json"]
    args = apply_preset(build_parser().parse_args(argv))  # the defaults the run sees (the parser leaves None)
    command = recorded_command(args)
    assert command.startswith("pasta-lens profile --model smollm2-135m-instruct --tasks json,counterfact --n 50")
    again = apply_preset(build_parser().parse_args(command.split()[1:]))
    for key in ("model", "tasks", "n", "method", "alpha", "top_m", "rescore_n", "k", "ks", "val_n", "strategy",
                "seed", "out"):
        assert getattr(again, key) == getattr(args, key), key
    assert build_parser().parse_args(["profile", "--k", "12"]).k == 12


def test_profile_cli_bad_arguments_are_clear(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["profile", "--k", "many"])
    assert main(["profile", "--tasks", "counterfact"]) == 2
    assert "--out" in capsys.readouterr().err


def test_plot_command_writes_a_png(llama, tmp_path):
    pytest.importorskip("matplotlib")
    scores = {"cf": profile_heads(llama, counterfact_examples(llama, n=1), "attribution", progress=False)}
    path = make_profile(llama, "tiny-llama", scores, k=3).save(tmp_path / "p.json")
    out = tmp_path / "plot.png"
    assert main(["profile", "plot", str(path), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["profile", "plot", "gpt-j-6b-pasta-top75", "--out", str(tmp_path / "gptj.png")]) == 0
    with pytest.raises(ValueError, match="no scores for task 'json'"):
        plot_profile(path, tasks=["json"])


def test_profile_command_end_to_end_and_resume(tiny_dir, tmp_path, capsys):
    from pasta_lens import HeadProfile
    from pasta_lens.models import load_model

    out = tmp_path / "tiny.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json,counterfact", "--n", "2", "--method", "hybrid",
            "--top-m", "99", "--k", "auto", "--ks", "1,2,4,99", "--val-n", "1", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "heads selected" in capsys.readouterr().out
    profile = HeadProfile.load(out)
    model = load_model(tiny_dir)
    profile.validate_for(model)
    assert profile.tasks == ("json", "counterfact") and profile.n_examples == {"json": 2, "counterfact": 2}
    assert profile.method.startswith("hybrid") and profile.strategy == "intersection" and profile.k in (1, 2, 4)
    assert profile.command == recorded_command(build_parser().parse_args(argv))
    curve = profile.provenance["ablation_curve"]
    assert [p["k"] for p in curve] == [1, 2, 4]  # k above the 12 heads of the model is dropped
    assert sorted(p.name for p in (tmp_path / "tiny.json.ckpt").iterdir()) == ["counterfact.ckpt", "json.ckpt"]
    # the same command again resumes from the checkpoints and selects the same heads
    assert main(argv) == 0
    again = HeadProfile.load(out)
    assert again.heads == profile.heads and again.scores == profile.scores


def test_plot_without_matplotlib_names_the_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"pasta-lens\[plot\]"):
        plot_profile("gpt-j-6b-pasta-top75")


def test_profile_records_wall_time_of_every_segment_and_refuses_other_settings(tiny_dir, tmp_path, capsys):
    """The recorded profiling time sums every segment a checkpoint holds (checked with a planted 1000 s segment,
    not with a clock); another alpha on the same --out is refused."""
    from pasta_lens import HeadProfile

    out = tmp_path / "tiny.json"
    argv = ["profile", "--model", tiny_dir, "--tasks", "json,counterfact", "--n", "2", "--method", "attribution",
            "--k", "2", "--bios", "named", "--out", str(out), "--quiet"]  # named: a non-empty top-2 intersection
    assert main(argv) == 0
    first = HeadProfile.load(out).provenance
    assert set(first["profiling_wall_time_s_per_task"]) == {"json", "counterfact"}
    # an earlier segment of each task, made unmistakable in its checkpoint: the rerun must count it
    for path in (tmp_path / "tiny.json.ckpt").glob("*.ckpt"):
        state = torch.load(path, weights_only=True)
        torch.save({**state, "segments_s": [1000.0] + list(state["segments_s"])}, path)
    assert main(argv) == 0
    recorded = HeadProfile.load(out).provenance
    assert recorded["profiling_wall_time_s_per_task"]["json"] >= 1000.0
    assert recorded["profiling_wall_time_s_per_task"]["counterfact"] >= 1000.0
    assert recorded["profiling_wall_time_s"] >= 2000.0 and recorded["total_wall_time_s"] >= 2000.0
    capsys.readouterr()
    # the same --out with another alpha: the checkpoint's settings check refuses it (no silent replacement)
    assert main(argv[:-3] + ["--alpha", "0.1", "--out", str(out), "--quiet"]) == 2
    assert "different profiling run" in capsys.readouterr().err
    assert HeadProfile.load(out).alpha == 0.01


def test_threads_are_set_for_the_run_and_restored_after_it(tiny_dir, tmp_path, monkeypatch):
    """--threads N holds for the run only: the caller's thread count is back afterwards, also when the run fails
    (an in-process run must not leave every later computation single-threaded)."""
    import pasta_lens.cli
    from pasta_lens.models import load_model

    seen = []

    def load(args):
        seen.append(torch.get_num_threads())
        if args.seed == 7:
            raise ValueError("a failing run")
        return load_model(args.model)

    monkeypatch.setattr(pasta_lens.cli, "load_model_for", load)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        argv = ["profile", "--model", tiny_dir, "--tasks", "counterfact", "--n", "1", "--method", "attribution",
                "--k", "1", "--threads", "1", "--quiet"]
        assert main(argv + ["--out", str(tmp_path / "a.json")]) == 0
        assert torch.get_num_threads() == 3
        assert main(argv + ["--seed", "7", "--out", str(tmp_path / "b.json")]) == 2
        assert torch.get_num_threads() == 3
        assert seen == [1, 1]  # the run itself had one thread
    finally:
        torch.set_num_threads(before)


def test_two_profile_runs_on_one_out_cannot_overlap(tiny_dir, tmp_path, capsys):
    import json
    import socket
    import subprocess
    import sys

    out = tmp_path / "tiny.json"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live "first run"
    try:
        (tmp_path / "tiny.json.lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        argv = ["profile", "--model", tiny_dir, "--tasks", "counterfact", "--n", "1", "--method", "attribution",
                "--k", "1", "--alpha", "0.1", "--out", str(out), "--quiet"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"in use by process {other.pid}" in err and err.startswith("pasta-lens: error:")
        assert not out.exists() and not (tmp_path / "tiny.json.ckpt").exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("argv,message", [
    (["profile", "--alpha", "1.5", "--out", "x.json"], "--alpha must be in (0, 1)"),
    (["profile", "--tasks", "json,jsn", "--out", "x.json"], "jsn"),
    (["profile", "--method", "hybrid", "--top-m", "12", "--ks", "40,120", "--out", "x.json"], "--top-m"),
    (["profile", "--method", "hybrid", "--top-m", "12", "--k", "13", "--out", "x.json"], "k goes up to 13"),
    (["profile", "--n", "0", "--out", "x.json"], "--n must be a positive"),
    (["evaluate", "--heads", "20-0", "--out", "x"], "bad head '20-0'"),
    (["evaluate", "--alpha", "0", "--heads", "1:0", "--out", "x"], "--alpha must be in (0, 1]"),
    (["evaluate", "--alphas", "0.1,2", "--heads", "1:0", "--out", "x"], "--alphas"),
    (["evaluate", "--ks", "0", "--heads", "1:0", "--out", "x"], "--ks"),
    (["evaluate", "--tasks", "jsn", "--heads", "1:0", "--out", "x"], "jsn"),
    (["evaluate", "--profile", "no-such-profile", "--out", "x"], "no-such-profile"),
    (["steer", "Maria is a *nurse*.", "--alpha", "0"], "--alpha must be in (0, 1]"),
    (["steer", "Maria is a *nurse*.", "--heads", "a:b"], "bad head 'a:b'"),
    (["attention", "Maria is a *nurse*.", "--alpha", "-1"], "--alpha must be in (0, 1]"),
])
def test_cli_arguments_are_checked_before_the_model_loads(argv, message, capsys):
    # the model name does not exist: had it been loaded first, the error would be about the model
    argv = argv[:1] + ["--model", "no-such-org/no-such-model"] + argv[1:] if argv[0] != "steer" and \
        argv[0] != "attention" else argv + ["--model", "no-such-org/no-such-model"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "no-such-model" not in err and err.count("\n") == 1


def test_ctrl_c_says_rerunning_resumes_and_exits_130(capsys):
    from pasta_lens.cli import run_command

    def interrupted(args):
        raise KeyboardInterrupt

    for command, where in (("profile", "checkpoints"), ("evaluate", "examples.jsonl")):
        args = build_parser().parse_args([command, "--out=x"])
        args.func = interrupted
        assert run_command(args) == 130
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and where in err and "rerun the same command to resume" in err


@pytest.mark.parametrize("content", ['{"schema_version": 1, "model_name": "m", "n_layers": 2, "n_heads": 2, '
                                     '"heads": null}', "[1, 2]", "{not json"])
def test_profile_plot_on_a_bad_profile_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["profile", "plot", str(path), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pasta-lens: error:") and err.count("\n") == 1 and "bad.json" in err
