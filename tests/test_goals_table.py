"""scripts/goals_table.py: the headline table is read from the stored summaries and its verdicts follow the numbers."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def goals_table(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("goals_table", REPO / "scripts" / "goals_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    copy = tmp_path / "results"
    shutil.copytree(module.ROOT, copy)
    monkeypatch.setattr(module, "ROOT", copy)
    return module


def _edit(module, name, task, method, **values):
    path = module.ROOT / f"{name}-summary.json"
    data = json.loads(path.read_text())
    data["tasks"][task][method].update(values)
    path.write_text(json.dumps(data))


def test_every_row_is_in_the_shipped_summaries_at_n_200(goals_table):
    text = goals_table.table()
    assert len(text.splitlines()) == 2 + len(goals_table.ROWS)
    default = text.splitlines()[-1]
    assert default.startswith("| **default**") and "90.0 [85.1, 93.4]" in default  # JSON F.Acc, read from the file
    earlier = goals_table.table(goals_table.EARLIER)  # every earlier default's summary is kept, at n = 200
    assert len(earlier.splitlines()) == 2 + len(goals_table.EARLIER) and "92.5 [88.0, 95.4]" in earlier


def test_a_verdict_follows_its_summary(goals_table):
    verdict = {g: ok for g, _, ok in goals_table.goals()}
    assert verdict["JSON F.Acc >= 70 and P.Acc >= 50"]
    _edit(goals_table, "test200-default-protect-base", "counterfact", "pasta", ps=0.95)
    _edit(goals_table, "test200-default-protect-base", "json", "pasta", p_acc=0.49)
    verdict = {g: ok for g, _, ok in goals_table.goals()}
    assert verdict["CounterFact PS >= 95"] and not verdict["JSON F.Acc >= 70 and P.Acc >= 50"]
    _edit(goals_table, "test200-json-pronoun", "pronoun", "zero-shot", fluency=10.0)  # the default now far below
    assert not {g: ok for g, _, ok in goals_table.goals()}["pronoun fluency within 5% of zero-shot"]


def test_a_row_with_fewer_than_200_examples_is_refused(goals_table):
    _edit(goals_table, "test200-default-random70", "biasbios", "random", n=50)
    with pytest.raises(SystemExit, match="n = 50, not 200"):
        goals_table.table()
