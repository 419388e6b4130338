"""``pasta-lens profile --preset quick``: what it expands to, that typed options win, and what the profile records.

The expected expansion is written out here as the docs state it (docs/profiling.md), not read from the preset.
"""

import json
import shlex

import pytest

from pasta_lens.cli import build_parser, main
from pasta_lens.cli.profile import recorded_command
from pasta_lens.cli.profile_preset import Preset, apply_preset

QUICK_BASE = {
    "tasks": "counterfact,biasbios",
    "n": 16,
    "method": "attribution",
    "k": "auto",
    "ks": "2,4,8",
    "val_n": 8,
    "select_by": "metric",
    "strategies": "union",
    "schedules": "prompt",
    "fluency_floor": 0.95,
}
PLAIN = {"tasks": "json,pronoun,biasbios,counterfact", "n": 200, "method": "hybrid", "k": "auto",
         "ks": "3,5,10,15,20,30,40,60,80", "val_n": 20, "select_by": None, "strategies": None, "schedules": None,
         "fluency_floor": None}


def parsed(*options):
    return build_parser().parse_args(["profile", *options, "--out", "p.json"])


def values(args):
    return {name: getattr(args, name) for name in QUICK_BASE}


def test_quick_expands_to_the_documented_options():
    assert values(apply_preset(parsed("--preset", "quick"), chat=False)) == QUICK_BASE
    chat = apply_preset(parsed("--preset", "quick"), chat=True)
    assert chat.tasks == "counterfact,biasbios,json,pronoun"  # chat tasks only with a chat template
    before_load = apply_preset(parsed("--preset", "quick"))
    assert before_load.tasks is None and before_load.n == 16  # the tasks wait for the model's template
    assert values(apply_preset(parsed())) == PLAIN  # no preset: the defaults of old
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["profile"].format_help().split())
    assert "quick: --tasks counterfact,biasbios (+json,pronoun with a chat template) --n 16 --method attribution " \
           "--k auto --ks 2,4,8 --val-n 8 --select-by metric --strategies union --schedules prompt " \
           "--fluency-floor 0.95" in help_text


def test_typed_options_override_the_preset():
    args = apply_preset(parsed("--preset", "quick", "--n", "40", "--ks", "3,6", "--schedules", "all",
                               "--tasks", "counterfact"), chat=True)
    assert (args.n, args.ks, args.schedules, args.tasks) == (40, "3,6", "all", "counterfact")
    assert (args.method, args.val_n, args.select_by, args.fluency_floor) == ("attribution", 8, "metric", 0.95)
    assert args.preset_typed == ["tasks", "n", "ks", "schedules"]
    fixed = apply_preset(parsed("--preset", "quick", "--k", "5"), chat=False)  # a fixed k: nothing to choose
    assert (fixed.k, fixed.ks, fixed.select_by, fixed.schedules, fixed.fluency_floor) == (5, PLAIN["ks"], None, None,
                                                                                           None)
    assert fixed.method == "attribution" and fixed.n == 16
    assert apply_preset(apply_preset(parsed("--preset", "quick", "--n", "40")), chat=False).n == 40  # idempotent


def test_recorded_command_spells_out_the_expansion_and_parses_back():
    args = parsed("--preset", "quick", "--model", "gemma-3-270m", "--val-n", "4")
    command = recorded_command(args)
    assert command.startswith("pasta-lens profile --preset quick --model gemma-3-270m --tasks counterfact,biasbios "
                              "--n 16 --method attribution")
    assert "--val-n 4" in command and "--schedules prompt" in command and "--fluency-floor 0.95" in command
    again = apply_preset(build_parser().parse_args(shlex.split(command)[1:]), chat=False)
    assert values(again) == {**QUICK_BASE, "val_n": 4}


def test_preset_with_learned_is_refused_before_loading(capsys):
    assert main(["profile", "--model", "no-such-org/no-such-model", "--preset", "quick", "--method", "learned",
                 "--out", "p.json"]) == 2
    err = capsys.readouterr().err
    assert "--preset quick" in err and "no-such-model" not in err


def test_a_preset_is_validated():
    with pytest.raises(ValueError, match="k must be 'auto'"):
        Preset("x", ("counterfact",), (), 4, "attribution", "5", (2,), 4, "metric", ("union",), ("all",), 0.95)
    with pytest.raises(ValueError, match="fluency_floor"):
        Preset("x", ("counterfact",), (), 4, "attribution", "auto", (2,), 4, "metric", ("union",), ("all",), 2.0)


def test_a_quick_profile_end_to_end_records_the_preset(tiny_dir, tmp_path, capsys):
    """On a tiny Llama with a chat template: the preset's four tasks, chosen by the metric with the floor; the
    provenance names the preset, its expansion and the overrides; the command repeats the run."""
    from pasta_lens import HeadProfile

    out = tmp_path / "quick.json"
    argv = ["profile", "--model", tiny_dir, "--preset", "quick", "--n", "2", "--val-n", "1", "--out", str(out),
            "--quiet", "--threads", "1"]
    assert main(argv) == 0
    assert "heads selected" in capsys.readouterr().out
    profile = HeadProfile.load(out)
    assert profile.tasks == ("counterfact", "biasbios", "json", "pronoun")
    assert profile.n_examples == {t: 2 for t in profile.tasks} and profile.method.startswith("attribution")
    assert profile.strategy == "union" and profile.k in (2, 4, 8)
    prov = profile.provenance
    assert prov["preset"]["name"] == "quick" and prov["preset"]["overridden"] == ["--n", "--val-n"]
    assert prov["preset"]["expands_to"].startswith("--tasks counterfact,biasbios (+json,pronoun")
    assert prov["selected_by"] == "metric" and prov["metric_curve"]["fluency_floor"] == 0.95
    assert prov["schedule"] == "prompt" and len(prov["metric_curve"]["points"]) == 3  # 3 k x the prompt schedule
    assert profile.command.startswith("pasta-lens profile --preset quick --model ")
    assert "--tasks counterfact,biasbios,json,pronoun --n 2 --method attribution" in profile.command
    json.loads(out.read_text())  # a plain JSON file
