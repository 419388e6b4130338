"""The CounterFact cases shipped inside the package: where they are found, what the loader makes of them.

The raw rows are read here independently of the loader (``gzip`` + ``json``) and compared with the cases the
loader returns; plain and gzipped copies of the same files must give the same cases; an installed wheel (not the
repository layout) must find its own copy.
"""

import gzip
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import pasta_lens
from pasta_lens.tasks import (CounterFactTask, data_file, default_data_dir, load_counterfact_split,
                              load_rome_counterfact, shipped_data_dir)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ("train", "test", "rome_format")
FIELDS = ("case_id", "prompt", "subject", "target_new", "ground_truth", "rephrase_prompt")


def raw_rows(name):
    """The rows of a shipped file, read without the package's loader."""
    path = Path(pasta_lens.__file__).parent / "data" / "counterfact" / f"{name}.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))


def test_default_is_the_copy_inside_the_package():
    package = Path(pasta_lens.__file__).resolve().parent
    assert default_data_dir() == shipped_data_dir() == package / "data"
    folder = package / "data" / "counterfact"
    assert sorted(p.name for p in folder.iterdir()) == ["LICENSE", "SOURCES.md", "rome_format.json.gz",
                                                        "test.json.gz", "train.json.gz"]
    assert "MIT License" in (folder / "LICENSE").read_text()
    for name in NAMES:  # provenance names every file it ships
        assert f"{name}.json.gz" in (folder / "SOURCES.md").read_text()
    size = sum(p.stat().st_size for p in folder.glob("*.json.gz"))
    assert 1_000_000 < size < 2_000_000, size  # ~1.35 MB: the three files, gzipped, and nothing bigger


def test_shipped_files_counts_fields_and_disjoint_splits():
    rows = {name: raw_rows(name) for name in NAMES}
    assert {k: len(v) for k, v in rows.items()} == {"train": 10000, "test": 10000, "rome_format": 455}
    ids = {k: [r["case_id"] for r in v] for k, v in rows.items()}
    assert all(len(set(v)) == len(v) for v in ids.values())  # no case twice in a file
    train, test, rome = (set(ids[n]) for n in NAMES)
    assert not train & test
    assert (len(rome & train), len(rome & test)) == (216, 239)  # every ROME-layout case belongs to one split
    for name in ("train", "test"):
        for row in rows[name]:
            assert all(isinstance(row[f], str) and row[f].strip() for f in FIELDS[1:]), row
            assert row["target_new"].strip() != row["ground_truth"].strip(), row

    # the loader keeps every row, in file order, field by field, and merges the ROME prompts by case_id
    rome_by_id = {r["case_id"]: r for r in rows["rome_format"]}
    facts = load_counterfact_split(data_file(shipped_data_dir(), "train"),
                                   load_rome_counterfact(data_file(shipped_data_dir(), "rome_format")))
    assert len(facts) == len(rows["train"])
    for fact, row in zip(facts, rows["train"]):
        assert (fact.case_id, fact.prompt, fact.subject, fact.target_new, fact.target_true) == (
            row["case_id"], row["prompt"], row["subject"], row["target_new"], row["ground_truth"])
        assert fact.paraphrases[0] == row["rephrase_prompt"]
        extra = rome_by_id.get(row["case_id"])
        assert fact.generation_prompts == (tuple(extra["generation_prompts"]) if extra else ())

    splits = CounterFactTask().splits()
    got = {k: {f.case_id for f in v} for k, v in splits.items()}
    assert {k: len(v) for k, v in splits.items()} == {"train": 9000, "validation": 1000, "test": 10000}
    assert got["train"] | got["validation"] == train and not got["train"] & got["validation"]
    assert got["test"] == test


def test_plain_and_gzipped_files_give_the_same_cases(tmp_path, monkeypatch):
    plain, mixed = tmp_path / "plain" / "counterfact", tmp_path / "mixed" / "counterfact"
    plain.mkdir(parents=True)
    mixed.mkdir(parents=True)
    for name in NAMES:
        gz = data_file(shipped_data_dir(), name)
        (plain / f"{name}.json").write_bytes(gzip.decompress(gz.read_bytes()))
    shutil.copy(plain / "train.json", mixed / "train.json")
    for name in ("test", "rome_format"):
        shutil.copy(data_file(shipped_data_dir(), name), mixed / f"{name}.json.gz")

    shipped = CounterFactTask(data_dir=shipped_data_dir()).splits()
    monkeypatch.setenv("PASTA_LENS_DATA", str(tmp_path / "plain"))
    assert default_data_dir() == tmp_path / "plain"
    assert data_file(default_data_dir(), "train").name == "train.json"
    assert CounterFactTask().splits() == shipped
    assert CounterFactTask(data_dir=tmp_path / "mixed").splits() == shipped


def test_data_folder_override(tmp_path, monkeypatch):
    root = tmp_path / "counterfact"
    root.mkdir()
    for src, name in [("counterfact_split.json", "train"), ("counterfact_split.json", "test"),
                      ("counterfact_rome.json", "rome_format")]:
        (root / f"{name}.json.gz").write_bytes(gzip.compress((FIXTURES / src).read_bytes()))
    monkeypatch.setenv("PASTA_LENS_DATA", str(tmp_path))
    task = CounterFactTask()
    assert task.data_dir == tmp_path
    assert sorted(f.case_id for f in task.examples("test")) == [0, 2, 7]  # the fixture's cases, not the shipped
    partial = tmp_path / "partial"
    shutil.copytree(root, partial / "counterfact")
    (partial / "counterfact" / "train.json.gz").unlink()
    with pytest.raises(FileNotFoundError, match="PASTA_LENS_DATA"):
        CounterFactTask(data_dir=partial).examples("train")
    with pytest.raises(ValueError, match="Unknown CounterFact file"):
        data_file(tmp_path, "validation")


def test_an_installed_wheel_finds_its_own_data(tmp_path):
    """Build a wheel from the sources, install it into a folder, load the cases from there (not the repo)."""
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("pasta_lens", "profiles"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    # Offline by construction: the build backend comes from this environment (the `test` extra installs
    # setuptools), never from an index; without it pip would fetch setuptools into an isolated build env.
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools: pip install -e '.[test]'")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(pip[:3] + ["wheel"] + pip[3:] + ["--no-index", "--no-deps", "--no-build-isolation", "-w",
                                                    str(tmp_path / "whl"), str(src)], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "whl").glob("pasta_lens-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("train.json.gz", "test.json.gz", "rome_format.json.gz", "SOURCES.md", "LICENSE"):
        assert f"pasta_lens/data/counterfact/{name}" in names
    assert "pasta_lens/tasks/occupation_facts.json" in names  # the implied bios' facts, read when tasks imports
    subprocess.run(pip[:3] + ["install"] + pip[3:] + ["--no-index", "--no-deps", "--target",
                                                      str(tmp_path / "site"), str(wheel)], check=True, cwd=tmp_path)
    shutil.rmtree(src)  # nothing of the sources is left to fall back on
    code = ("import json, pasta_lens.tasks as t; s = t.CounterFactTask().splits(); "
            "from pasta_lens.tasks.occupation_facts import FACTS_FILE; "
            "print(json.dumps([t.__file__, str(t.default_data_dir()), {k: len(v) for k, v in s.items()}, "
            "str(FACTS_FILE), len(t.implied_biographies('test', 5))]))")
    env = {k: v for k, v in os.environ.items() if k not in ("PASTA_LENS_DATA", "PYTHONPATH")}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={**env, "PYTHONPATH": str(tmp_path / "site")}).stdout
    module, data_dir, counts, facts_file, n_implied = json.loads(out.strip().splitlines()[-1])
    site = (tmp_path / "site").resolve()
    assert Path(module).resolve().is_relative_to(site) and Path(data_dir).resolve() == site / "pasta_lens" / "data"
    assert Path(facts_file).resolve() == site / "pasta_lens" / "tasks" / "occupation_facts.json" and n_implied == 5
    assert counts == {"train": 9000, "validation": 1000, "test": 10000}
