"""bench/profile_budget.py rebuilds a shipped profile from the command the profile records: the argv it builds."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def budget():
    spec = importlib.util.spec_from_file_location("profile_budget", REPO / "bench" / "profile_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cli_profile_is_rebuilt_by_the_cli_into_the_given_file(budget, tmp_path):
    profile = {"command": "pasta-lens profile --model m --tasks json --out profiles/x.json --seed 1"}
    argv = budget.rebuild_argv(profile, tmp_path, 2, tmp_path / "p.json")
    assert argv[:3] == [sys.executable, "-m", "pasta_lens.cli"]
    assert argv[3:9] == ["profile", "--model", "m", "--tasks", "json", "--seed"]
    assert "profiles/x.json" not in argv  # the shipped file is never overwritten
    assert argv[argv.index("--out") + 1] == str(tmp_path / "p.json")
    assert argv[argv.index("--checkpoint-dir") + 1] == str(tmp_path / "ckpt")
    assert argv[argv.index("--threads") + 1] == "2"


def test_a_script_profile_is_rebuilt_by_its_script_into_the_given_file(budget, tmp_path):
    profile = {"command": "python scripts/learned_variants.py --tag r1 --nt 1 --eval 0 --out-dir runs/v "
                          "--profile-out profiles/smollm2-135m-instruct.json"}
    argv = budget.rebuild_argv(profile, tmp_path, 2, tmp_path / "p.json")
    assert argv[:2] == [sys.executable, "scripts/learned_variants.py"]
    assert "profiles/smollm2-135m-instruct.json" not in argv and "runs/v" not in argv
    # argparse keeps the last value: the bench's thread count, scratch folder and output win
    assert argv[-6:] == ["--nt", "2", "--out-dir", str(tmp_path / "run"), "--profile-out", str(tmp_path / "p.json")]


def test_the_shipped_default_records_a_command_the_bench_can_rebuild(budget, tmp_path):
    shipped = json.loads((REPO / "profiles" / "smollm2-135m-instruct.json").read_text())
    argv = budget.rebuild_argv(shipped, tmp_path, 1, tmp_path / "p.json")
    assert Path(REPO / argv[1]).is_file() or argv[1] == "-m"
    assert argv[-1] == str(tmp_path / "p.json")
