"""The transfer tasks on the real offline model (slow): a handful of examples of each new task, rendered and
evaluated through the harness, unsteered and steered; the emphasis covers exactly the instruction."""

import pytest
import torch

from pasta_lens.evaluation import evaluate
from pasta_lens.tasks import build_task

pytestmark = pytest.mark.slow

CASES = [("instructions", None), ("context_qa", None), ("json", "implied"), ("pronoun", "implied"),
         ("biasbios", "implied")]


@pytest.mark.parametrize("name, bios", CASES)
def test_profiling_example_marks_the_instruction(smollm2, name, bios):
    task = build_task(name, bios=bios)
    ex = task.examples("train", 8)
    ex = next(e for e in ex if name != "instructions" or task.opening(e) is not None)
    pe = task.profiling_example(smollm2, ex)
    span = smollm2.tokenizer.decode(pe.tokens[0, :pe.key_mask.shape[1]][pe.key_mask[0]])
    expected = {"instructions": ex.texts[0] if name == "instructions" else "",
                "context_qa": getattr(ex, "format_id", "") and task.prompt(ex).split("*")[-2],
                "json": "Answer the occupation of", "pronoun": "For the aforementioned text",
                "biasbios": ex.context[:ex.first_sentence_end][:20] if name == "biasbios" else ""}[name]
    assert expected.split()[0] in span and len(span) < len(task.prompt(ex))
    with torch.inference_mode():
        assert torch.isfinite(pe.objective(smollm2(pe.tokens))).all()


def test_new_tasks_evaluate_through_the_harness(smollm2, tmp_path):
    tasks = [build_task(n, bios=b) for n, b in CASES]
    res = evaluate(smollm2, tasks, ["zero-shot", "pasta"], split="validation", n=2, batch_size=2,
                   heads=[(20, 0), (25, 3), (14, 5)], max_new_tokens=12, out_dir=tmp_path, progress=False)
    for task in tasks:
        for method in ("zero-shot", "pasta"):
            cell = res.summary["tasks"][task.name][method]
            assert cell["n"] == 2 and all(cell[m] is not None for m in task.metrics), (task.name, method)
    rows = {(r["task"], r["method"], r["uid"]): r for r in res.rows}
    generated = [k for k in rows if k[0] in ("instructions", "context_qa", "json") and k[1] == "zero-shot"]
    assert generated and all(rows[k]["outputs"]["output"].strip() for k in generated)
    changed = sum(rows[k]["outputs"] != rows[(k[0], "pasta", k[2])]["outputs"] for k in generated)
    assert changed >= 1  # steering three heads at alpha 0.01 changes some generation
    assert res.summary["config"]["task_data"]["json"] == "implied"
