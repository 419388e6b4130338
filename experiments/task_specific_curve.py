"""Task-specific head sets scored by the tasks' own metrics on validation, beside the intersection / union points.

    OMP_NUM_THREADS=1 torchrun --nproc-per-node 2 --master-port 29677 experiments/task_specific_curve.py
    OMP_NUM_THREADS=1 python experiments/task_specific_curve.py          # the same in one process

``task_specific`` steers each task with its own top-k heads, so it makes no single profile of several tasks and
``pasta-lens profile --select-by metric`` compares it but never ships it; this runs
:func:`pasta_lens.evaluation.metric_curve` on it through the Python API with the settings of the shipped ``-metric``
selection (its head scores, k 90 / 120, schedules all / prompt, alpha 0.01, seed 0, 20 validation examples per task)
and prints the curve. Rows go to ``runs/select-metric-ts/`` (rerun to resume).
"""

import json

import torch

from pasta_lens import load_model, load_profile
from pasta_lens.distributed import current_world
from pasta_lens.evaluation import curve_record, metric_curve
from pasta_lens.profiling import scores_from_profile

torch.set_num_threads(1)
model = load_model("smollm2-135m-instruct")
scores = scores_from_profile(load_profile("smollm2-135m-instruct-attribution"))
curve = metric_curve(model, scores, [90, 120], ["task_specific"], ["all", "prompt"],
                     tasks=["json", "pronoun", "biasbios", "counterfact"], split="validation", n=20, alpha=0.01,
                     seed=0, out_dir="runs/select-metric-ts", progress=current_world().rank == 0)
if current_world().rank == 0:
    print(json.dumps(curve_record(curve), indent=1))
