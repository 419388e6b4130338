"""What a model with no shipped profile should be steered with, chosen on validation on both offline models.

Question: is the interim head set (every head of the last third of the layers, alpha 0.01, every row) the best
blind choice, or would the same heads on the prompt only, a milder alpha, or no steering at all serve a user
better? Applies the rule of `results/no-profile/DECLARED.txt` (written before any number was read) to the
`pasta-lens evaluate` folders of `results/no-profile.md`: per model, a candidate's score is the mean over
CounterFact and BiasBios of each task's headline metrics (ES, PS; Acc), and it passes if its CounterFact fluency
is >= 0.95 x zero-shot's; kept is the candidate passing on both models with the best mean score (zero-shot
always passes).

    python experiments/no_profile_choice.py --runs runs/interim
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

MODELS = ("smollm2", "gemma")
CANDIDATES = {  # name -> (folder, method in its rows)
    "zero-shot": ("all-001", "zero-shot"),
    "interim (every row, alpha 0.01)": ("all-001", "pasta"),
    "last third, prompt, alpha 0.01": ("prompt-001", "pasta"),
    "last third, prompt, alpha 0.1": ("prompt-01", "pasta"),
}
FLOOR = 0.95


def summary(runs: Path, model: str, folder: str, method: str) -> dict[str, dict[str, float]] | None:
    path = runs / model / folder / "summary.json"
    if not path.exists():
        return None
    tasks = json.loads(path.read_text())["tasks"]
    if any(method not in tasks.get(t, {}) for t in ("counterfact", "biasbios")):
        return None
    return {t: tasks[t][method] for t in ("counterfact", "biasbios")}


def score(s: dict[str, dict[str, float]]) -> float:
    return ((s["counterfact"]["es"] + s["counterfact"]["ps"]) / 2 + s["biasbios"]["acc"]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder holding <model>/<candidate>/ runs")
    args = parser.parse_args()
    print("| candidate | model | CF ES | CF PS | BiasBios Acc | CF fluency (x zero-shot) | score | passes |")
    print("|---|---|---|---|---|---|---|---|")
    kept: dict[str, tuple[float, bool]] = {}
    for name, (folder, method) in CANDIDATES.items():
        scores, passes = [], []
        for model in MODELS:
            s, zero = summary(args.runs, model, folder, method), summary(args.runs, model, "all-001", "zero-shot")
            if s is None or zero is None:
                print(f"| {name} | {model} | - | - | - | - | - | not run |")
                continue
            ratio = s["counterfact"]["fluency"] / zero["counterfact"]["fluency"]
            ok = name == "zero-shot" or ratio >= FLOOR
            scores.append(score(s))
            passes.append(ok)
            cf, bb = s["counterfact"], s["biasbios"]
            print(f"| {name} | {model} (n = {cf['n']}) | {100 * cf['es']:.1f} | {100 * cf['ps']:.1f} | "
                  f"{100 * bb['acc']:.1f} | {cf['fluency']:.2f} ({ratio:.2f}x) | {100 * score(s):.1f} | "
                  f"{'yes' if ok else 'no'} |")
        if len(scores) == len(MODELS):
            kept[name] = (sum(scores) / len(scores), all(passes))
    eligible = {n: v for n, v in kept.items() if v[1]}
    if len(kept) < len(CANDIDATES):
        print("\nverdict: not every candidate has rows on both models yet")
    else:
        best = max(eligible, key=lambda n: eligible[n][0])
        print(f"\nverdict: kept '{best}' (mean score {100 * eligible[best][0]:.1f} over the two models; passing on "
              f"both: {', '.join(eligible)})")


if __name__ == "__main__":
    main()
