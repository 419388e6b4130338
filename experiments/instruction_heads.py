"""Which heads read the instruction, and which read the document? Attention mass per head, unsteered, on train prompts.

Question it answers: PASTA scales the document down in every steered head. Heads that the model uses to *read the
document* (the bio, the context, the request) would then be blinded; heads that already read the instruction are
the natural ones to strengthen. For every ``(layer, head)`` this probe measures, on the unsteered model, the mean
attention mass of the query rows from the instruction's first token to the end of the prompt (the rows that set up
the answer) on three groups of keys:

    instr[l, h] = mean over rows q of  sum_{k in instruction} A_lh[q, k]
    doc[l, h]   = mean over rows q of  sum_{k in the user's other text} A_lh[q, k]
    rest[l, h]  = 1 - instr - doc      (the chat template, the system prompt, the attention sink)

over train prompts of the chosen tasks, and writes the three ``[layer, head]`` tables with each head's
``instr / (instr + doc)`` (its preference for the instruction over the document). Head sets built from it are then
evaluated with ``pasta-lens evaluate --heads``.

Usage::

    python experiments/instruction_heads.py --tasks json,context_qa,instructions --n 24 --out runs/instruction-heads.json

The answer: ``results/transfer.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch


def masses(model: Any, task: Any, examples: list, batch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed (over rows) instruction and document mass per [layer, head], and the number of rows."""
    from pasta_lens import emphasize
    from pasta_lens.chat import render_chat
    from pasta_lens.spans import parse_markup
    from pasta_lens.tasks.base import emphasis_of

    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    instr_sum = torch.zeros(n_layers, n_heads)
    doc_sum = torch.zeros(n_layers, n_heads)
    n_rows = 0
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        markups = [task.queries(ex)[0].markup for ex in chunk]
        rendered = [task.render(model, m) for m in markups]
        em = emphasis_of(model, rendered)
        turns = [render_chat(model, parse_markup(m)[0]) for m in markups]
        em_user = emphasize(model, [r.text for r in rendered], char_ranges=[[(t.start, t.end)] for t in turns],
                            prepend_bos=False)
        instr = em.key_mask
        doc = em_user.key_mask & ~instr
        first = instr.float().argmax(-1)
        T = em.tokens.shape[1]
        rows = (torch.arange(T)[None, :] >= first[:, None]) & em.attention_mask.bool()  # [batch, query]
        with torch.inference_mode():
            _, cache = model.run_with_cache(em.tokens, attention_mask=em.attention_mask,
                                            names_filter=lambda n: n.endswith("attn.hook_pattern"))
        for layer in range(n_layers):
            pattern = cache[f"blocks.{layer}.attn.hook_pattern"].float()  # [batch, head, query, key]
            on_instr = (pattern * instr[:, None, None, :].float()).sum(-1)  # [batch, head, query]
            on_doc = (pattern * doc[:, None, None, :].float()).sum(-1)
            r = rows[:, None, :].float()
            instr_sum[layer] += (on_instr * r).sum((0, 2))
            doc_sum[layer] += (on_doc * r).sum((0, 2))
        n_rows += int(rows.sum())
        del cache
    return instr_sum, doc_sum, n_rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--tasks", default="json,context_qa,instructions")
    p.add_argument("--bios", default="implied")
    p.add_argument("--n", type=int, default=24, help="train prompts per task")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from pasta_lens import load_model
    from pasta_lens.tasks import build_task

    model = load_model(args.model)
    start = time.time()
    per_task = {}
    for name in args.tasks.split(","):
        task = build_task(name, bios=args.bios)
        instr, doc, n = masses(model, task, task.examples("train", args.n, 0), args.batch)
        per_task[name] = {"instr": (instr / n).tolist(), "doc": (doc / n).tolist(), "rows": n}
        print(f"{name}: {n} rows ({time.time() - start:.0f} s)", flush=True)
    instr = torch.stack([torch.tensor(v["instr"]) for v in per_task.values()]).mean(0)
    doc = torch.stack([torch.tensor(v["doc"]) for v in per_task.values()]).mean(0)
    pref = instr / (instr + doc).clamp_min(1e-9)
    record = {"command": "python experiments/instruction_heads.py " + " ".join(argv or sys.argv[1:]),
              "tasks": per_task, "instr": instr.tolist(), "doc": doc.tolist(), "preference": pref.tolist(),
              "seconds": round(time.time() - start)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record) + "\n")
    order = sorted(((float(pref[l, h]), l, h) for l in range(pref.shape[0]) for h in range(pref.shape[1])),
                   reverse=True)
    print("top instruction-preferring heads:", [(l, h, round(s, 3)) for s, l, h in order[:20]])
    print("top document-reading heads:",
          sorted(((round(float(doc[l, h]), 3), l, h) for l in range(doc.shape[0]) for h in range(doc.shape[1])),
                 reverse=True)[:20])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
