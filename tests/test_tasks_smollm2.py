"""Tasks and the harness on the real offline model (slow): token layout of each task and one tiny evaluation."""

import pytest
import torch

from pasta_lens.evaluation import evaluate
from pasta_lens.tasks import TASK_NAMES, get_task

pytestmark = pytest.mark.slow


def test_profiling_examples_on_smollm2(smollm2):
    for name in TASK_NAMES:
        task = get_task(name)
        ex = task.profiling_examples(smollm2, "train", n=1)[0]
        tokens = ex.tokens[0].tolist()
        if task.chat:  # the chat template's own <|im_start|> starts the text; no BOS is doubled
            assert tokens[0] == smollm2.tokenizer.convert_tokens_to_ids("<|im_start|>") != tokens[1]
        span = smollm2.tokenizer.decode(ex.tokens[0, :ex.n_prompt][ex.key_mask[0]])
        expected = {"json": "Answer the occupation of", "pronoun": "For the aforementioned text",
                    "biasbios": " is a", "counterfact": "Currently"}[name]
        if name == "counterfact":
            assert expected not in span and task.examples("train", 1)[0].target_new in span
        else:
            assert expected in span
        with torch.inference_mode():
            value = ex.objective(smollm2(ex.tokens))
        assert torch.isfinite(value).all()


def test_counterfact_evaluate_on_smollm2(smollm2):
    res = evaluate(smollm2, ["counterfact"], ["zero-shot", "pasta"], split="validation", n=1,
                   heads=[(20, 0), (25, 3)], progress=False, max_new_tokens=4)
    cf = res.summary["tasks"]["counterfact"]
    assert cf["zero-shot"]["n"] == 1 and cf["zero-shot"]["es"] is not None and cf["pasta"]["ps"] is not None
    # steering changes the scores (same prompts, steered heads)
    by = {(r["task"], r["method"], r["uid"]): r["outputs"] for r in res.rows}
    uid = get_task("counterfact").examples("validation", 1)[0].uid
    assert by[("counterfact", "zero-shot", uid)]["es"] != by[("counterfact", "pasta", uid)]["es"]
