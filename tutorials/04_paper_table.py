# %% [markdown]
# # The paper's table on a small scale
#
# The PASTA paper compares prompting baselines (zero-shot, marking the span with `*` or quotes, few-shot) with
# steering (all heads, random heads, profiled heads) on four tasks: JSON formatting, pronoun changing, BiasBios and
# CounterFact. `pasta_lens.evaluation.evaluate` runs any of those methods on any of the tasks, writes one JSONL row
# per example (resumable), a `summary.json` and a Markdown table. Here: a small run you can read in a minute, and
# an ablation over alpha.
#
# Results are reported on the **test** split (profiling and tuning use train/validation). The biography tasks run
# on seeded synthetic biographies unless given real ones (marked † in the table). With `PASTA_LENS_FAST=1` the run
# is tiny (CounterFact only, 2 examples, 8 generated tokens): the numbers then show the mechanics, not the
# method's quality. Pictures and the run's files go to `$PASTA_LENS_OUT`.

# %%
import os
from pathlib import Path

from pasta_lens import default_heads, load_model
from pasta_lens.evaluation import evaluate
from pasta_lens.plot import plot_ablation

FAST = os.environ.get("PASTA_LENS_FAST") == "1"
OUT = Path(os.environ.get("PASTA_LENS_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
TASKS = ("counterfact",) if FAST else ("json", "pronoun", "biasbios", "counterfact")
N = 2 if FAST else 50
MAX_NEW_TOKENS = 8 if FAST else None  # None: each task's own length
ALPHAS = (0.01, 1.0) if FAST else (0.001, 0.01, 0.1, 0.5, 1.0)

# %% [markdown]
# ## Run the harness
# The steered methods need a head set: here the model's default (a shipped profile made on these weights when
# there is one, else the interim set of every head in the last third of the layers), passed as `heads=`; the
# table calls the method using it "PASTA, profile heads". Bare `heads=` are steered at every token (the paper's schedule); pass `profile=` (e.g. `pasta_lens.registry.default_profile(model)[0]`) to evaluate a `HeadProfile` with its recorded schedule. `pasta:alpha=1` steers nothing
# (alpha = 1 leaves every row unchanged), so it must reproduce zero-shot: a sanity check for free.

# %%
model = load_model("smollm2-135m-instruct")
heads, why = default_heads(model)
print(f"{len(heads)} heads: {why}")
methods = ["zero-shot", "star", "pasta"] + [f"pasta:alpha={a:g}" for a in ALPHAS if a != 0.01]
result = evaluate(model, list(TASKS), methods, split="test", n=N, heads=heads, out_dir=OUT / "04_eval",
                  max_new_tokens=MAX_NEW_TOKENS, progress=False)
print(result.table)

# %% [markdown]
# ## Read the table
# Rows are methods, columns each task's metrics: for CounterFact, ES (efficacy: is the new answer more likely
# than the old one?), PS (the same for paraphrased questions) and fluency of a generation; for JSON, F.Acc
# (valid JSON) and P.Acc (the right occupation in it). Every number comes from `result.rows`, one row per
# example, with the prompt and the raw outputs, so any cell can be traced back. For CounterFact the rows hold the
# teacher-forced log-probabilities behind ES, `outputs["es"] = [log P(new), log P(old)]`; their difference is a
# finer measure than the 0/1 efficacy, useful at small n:

# %%
def es_margin(method):
    rows = [r for r in result.rows if r["task"] == "counterfact" and r["method"] == method]
    return sum(r["outputs"]["es"][0] - r["outputs"]["es"][1] for r in rows) / len(rows)


margin = {m: es_margin(m) for m in methods}
for m, v in margin.items():
    print(f"{m:>16}: mean log P(new) - log P(old) = {v:+.3f}")

# %% [markdown]
# ## Ablation: steering strength
# Smaller alpha = stronger steering. The curve of the ES margin against alpha ends at alpha = 1 on the
# zero-shot value.

# %%
by_alpha = {a: margin["pasta" if a == 0.01 else f"pasta:alpha={a:g}"] for a in ALPHAS}
plot_ablation({"PASTA (CounterFact)": sorted(by_alpha.items()),
               "zero-shot": [(min(ALPHAS), margin["zero-shot"]), (max(ALPHAS), margin["zero-shot"])]},
              "alpha (factor on attention outside the span)", OUT / "04_alpha_ablation.png",
              ylabel="mean log P(new) - log P(old)", title=f"CounterFact test, n={N}", logx=True)
