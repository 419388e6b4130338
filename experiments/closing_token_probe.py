"""How likely the steered model is to *close* the JSON answer: teacher-forced on the gold answer +
``<|im_end|>``, the probability of the answer's closing token (``"}``) where it is due, and the model's top-3
tokens there, for each of the first N examples of a split.

    .venv/bin/python experiments/closing_token_probe.py --profile smollm2-135m-instruct --split validation --n 20

Steered with the profile's recorded schedule (``prompt`` for the learned profiles: only the prompt rows are
steered, as in their evaluation). ``--profile none``: the unsteered model.
"""
import argparse

import torch

from pasta_lens import load_model, load_profile, steer
from pasta_lens.tasks import get_task

ap = argparse.ArgumentParser()
ap.add_argument("--profile", default="smollm2-135m-instruct")
ap.add_argument("--split", default="validation")
ap.add_argument("--n", type=int, default=20)
ap.add_argument("--threads", type=int, default=1)
a = ap.parse_args()
torch.set_num_threads(a.threads)
model = load_model("smollm2-135m-instruct")
tok = model.tokenizer
profile = None if a.profile == "none" else load_profile(a.profile)
probs = []
for ex in get_task("json").profiling_examples(model, split=a.split, n=a.n, end_turn=True):
    with torch.no_grad():
        if profile is None:
            logits = model(ex.tokens)
        else:
            with steer(model, profile, ex.key_mask):
                logits = model(ex.tokens)
    logp = torch.log_softmax(logits[0, ex.close - 1].float(), -1)
    p = float(logp[ex.tokens[0, ex.close]].exp())
    top = torch.topk(logp, 3)
    probs.append(p)
    print(f"P({tok.decode([int(ex.tokens[0, ex.close])])!r}) = {p:.3f}   top-3: " +
          ", ".join(f"{tok.decode([int(i)])!r} {float(v.exp()):.2f}" for v, i in zip(top.values, top.indices)))
probs_t = torch.tensor(probs)
print(f"{a.profile}, {a.split} n={a.n}: mean P(close) {probs_t.mean():.3f}, median {probs_t.median():.3f}, "
      f"P(close) > 0.5 in {sum(1 for p in probs if p > 0.5)} of {len(probs)}")
