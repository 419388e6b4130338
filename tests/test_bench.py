"""bench/profile_budget.py rebuilds a profile from the command the profile records: the argv it builds."""

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
    # recorded before --bios existed: rebuilt on the named bios it was made on; a recorded --bios is kept
    assert argv[argv.index("--bios") + 1] == "named"
    implied = {"command": "pasta-lens profile --model m --tasks json --bios implied --out x.json"}
    rebuilt = budget.rebuild_argv(implied, tmp_path, 2, tmp_path / "p.json")
    assert rebuilt.count("--bios") == 1 and rebuilt[rebuilt.index("--bios") + 1] == "implied"


def test_a_profile_not_made_by_pasta_lens_is_refused(budget, tmp_path):
    profile = {"command": "python some_script.py --tag r1 --profile-out profiles/smollm2-135m-instruct.json"}
    with pytest.raises(ValueError, match="not a pasta-lens command"):
        budget.rebuild_argv(profile, tmp_path, 2, tmp_path / "p.json")


def test_a_profile_is_found_by_registry_name_in_experiments_or_by_path(budget, tmp_path):
    assert budget.profile_path("smollm2-135m-instruct") == REPO / "profiles" / "smollm2-135m-instruct.json"
    moved = budget.profile_path("smollm2-135m-instruct-learned")
    assert moved == REPO / "experiments" / "profiles" / "smollm2-135m-instruct-learned.json" and moved.is_file()
    assert budget.profile_path(str(tmp_path / "x.json")) == tmp_path / "x.json"
    with pytest.raises(SystemExit, match="no profile named 'nope'"):
        budget.profile_path("nope")


def test_the_shipped_default_records_a_command_the_bench_can_rebuild(budget, tmp_path):
    shipped = json.loads((REPO / "profiles" / "smollm2-135m-instruct.json").read_text())
    argv = budget.rebuild_argv(shipped, tmp_path, 1, tmp_path / "p.json")
    assert argv[1:4] == ["-m", "pasta_lens.cli", "profile"]
    assert argv[-1] == str(tmp_path / "p.json")


@pytest.mark.parametrize("folder", ["profiles", "experiments/profiles"])
def test_every_smollm2_profile_kept_in_the_repository_can_be_rebuilt(budget, tmp_path, folder):
    """A profile kept in the repository records a pasta-lens command (a union is rebuilt by `profile union`)."""
    for path in sorted((REPO / folder).glob("smollm2-*.json")):
        profile = json.loads(path.read_text())
        if profile["command"].startswith("pasta-lens profile union "):
            continue
        assert budget.rebuild_argv(profile, tmp_path, 1, tmp_path / "p.json")[3] == "profile", path.name
