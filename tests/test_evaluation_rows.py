"""Trust in a results folder: one writer at a time, one row per (configuration, example), CounterFact's paper
metrics, and the evaluation package's seams (no private names across modules, no import cycle)."""

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pasta_lens.cli import main
from pasta_lens.evaluation import evaluate
from pasta_lens.tasks import CounterFactTask, Fact
from pasta_lens.tasks.bio_tasks import JsonTask
from tests.test_evaluation import HEADS, short_bios

ROOT = Path(__file__).resolve().parents[1]


def test_counterfact_es_ps_compare_first_tokens_and_keep_rome_means():
    """ES / PS compare the objects' first-token probabilities (the official PASTA code's); the ROME columns
    compare mean per-token log-probs. Built so that the two disagree in both directions, with a tie."""
    fact = Fact(uid="cf:1", source="t", case_id=1, prompt="p is", target_new="a b", target_true="c",
                paraphrases=("q", "r"))
    task = CounterFactTask(facts=[fact])
    results = {
        "es": [-1.5, -1.0], "es.tokens": [[-0.5, -2.5], [-1.0]],     # first token wins, mean loses
        "ps0": [-0.2, -1.0], "ps0.tokens": [[-2.0, 1.6], [-1.0]],    # first token loses, mean wins
        "ps1": [-1.0, -3.0], "ps1.tokens": [[-1.0, -1.0], [-1.0]],   # a tie on the first token: a failure
    }
    m = task.metrics_from(fact, results)
    assert m == {"es": 1.0, "ps": 0.0, "es_rome": 0.0, "ps_rome": 1.0}
    assert task.average_metrics == ("es", "ps") and {"es_rome", "ps_rome"} <= set(task.metrics)


def test_duplicate_rows_are_kept_once_and_reported(llama, tmp_path):
    """A file two runs appended to at once (the same rows twice, one of them with other outputs) is read as one row
    per (configuration, example), with a warning that counts them, and rewritten without the duplicates."""
    task = JsonTask(bios=short_bios())
    kw = dict(n=2, heads=HEADS, out_dir=tmp_path, batch_size=2, max_new_tokens=2, progress=False)
    first = evaluate(llama, [task], ["zero-shot", "pasta"], **kw)
    path = tmp_path / "examples.jsonl"
    lines = path.read_text().splitlines()
    other = json.loads(lines[0])
    other["outputs"]["output"] = '{"name": "x", "occupation": "nurse"}'  # a second run's row, last: it is kept
    path.write_text("\n".join(lines + lines[1:3] + [json.dumps(other)]) + "\n")
    with pytest.warns(UserWarning, match=r"7 rows for 4 distinct .* dropped 3 duplicate rows of 3 pairs.* \(1 of "
                                         r"the dropped rows had other outputs"):
        again = evaluate(llama, [task], ["zero-shot", "pasta"], **kw)
    assert len(again.rows) == 4 and [r["uid"] for r in again.rows] == [r["uid"] for r in first.rows]
    assert again.rows[0]["outputs"]["output"] == other["outputs"]["output"]
    assert again.summary["tasks"]["json"]["zero-shot"]["n"] == 2
    assert len(path.read_text().splitlines()) == 4  # rewritten once, so the warning is not repeated forever


FIRST_RUN = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from pasta_lens.evaluation import evaluate
from pasta_lens.tasks.bio_tasks import JsonTask
from tests.test_evaluation import short_bios
from tests.tiny import tiny_model

out, started, gate = (Path(p) for p in sys.argv[1:4])

class Gated(JsonTask):  # holds the run inside its loop until the test opens the gate
    def metrics_from(self, example, results):
        started.touch()
        while not gate.exists():
            time.sleep(0.05)
        return super().metrics_from(example, results)

evaluate(tiny_model("llama"), [Gated(bios=short_bios())], ["zero-shot"], n=2, out_dir=out, batch_size=1,
         max_new_tokens=2, progress=False)
"""


def test_a_second_run_on_one_folder_is_refused_naming_the_first(saved_llama, tmp_path, capsys):
    """Two `evaluate` runs on one folder: while the first is inside its loop, the second (the CLI) exits with one
    line naming the first's pid and command, and writes nothing; the first finishes with one row per example."""
    out, started, gate = tmp_path / "run", tmp_path / "started", tmp_path / "gate"
    script = tmp_path / "first_run.py"
    script.write_text(FIRST_RUN.format(root=str(ROOT)))
    first = subprocess.Popen([sys.executable, str(script), str(out), str(started), str(gate)])
    try:
        deadline = time.time() + 300
        while not started.exists():
            assert first.poll() is None, "the first run ended before its loop"
            assert time.time() < deadline, "the first run never reached its loop"
            time.sleep(0.1)
        code = main(["evaluate", "--model", saved_llama, "--tasks", "json", "--heads", "1:0", "--baselines",
                     "zero-shot,pasta", "--n", "2", "--max-new-tokens", "2", "--out", str(out)])
        err = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]  # after the loading bars
        assert code == 2 and err.startswith("pasta-lens: error:")
        assert f"in use by process {first.pid}" in err and "first_run.py" in err and str(out) in err
        gate.touch()
        assert first.wait(timeout=300) == 0
    finally:
        gate.touch()
        first.kill()
        first.wait()
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and len({(r["config"], r["uid"]) for r in rows}) == 2
    assert not (out / ".lock").exists()  # released on exit
    assert main(["evaluate", "--model", saved_llama, "--tasks", "json", "--heads", "1:0", "--baselines",
                 "zero-shot", "--n", "1", "--max-new-tokens", "2", "--out", str(out)]) == 0  # free again


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    from tests.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama")
    path = tmp_path_factory.mktemp("tiny_llama_rows")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


EVALUATION = sorted((ROOT / "pasta_lens" / "evaluation").glob("*.py")) + [
    ROOT / "pasta_lens" / "cli" / "evaluate.py", ROOT / "pasta_lens" / "cli" / "transfer.py"]


@pytest.mark.parametrize("path", EVALUATION, ids=lambda p: p.name)
def test_evaluation_modules_import_no_private_names_and_stay_small(path):
    tree = ast.parse(path.read_text())
    private = [f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names if alias.name.startswith("_") and node.module != "__future__"]
    assert not private, f"{path.name} imports private names {private}: make them public in their owner"
    assert len(path.read_text().splitlines()) < 400


def test_evaluation_modules_import_in_one_direction():
    """specs <- plans, scoring, report, rows <- harness <- selection, transfer: no module imports a later one."""
    order = ["specs", "plans", "rows", "report", "scoring", "harness", "selection", "transfer"]
    for name in order:
        tree = ast.parse((ROOT / "pasta_lens" / "evaluation" / f"{name}.py").read_text())
        used = {node.module.rsplit(".", 1)[-1] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pasta_lens.evaluation.")}
        later = used & set(order[order.index(name):])
        assert not later, f"evaluation.{name} imports {sorted(later)}, which come after it"
