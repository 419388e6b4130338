"""Wall time of ``pasta-lens profile --preset quick`` against its 10-minute budget, and what the profile buys.

    nice -n 10 python bench/quick_profile.py                          # Gemma 3 270M, 2 threads
    python bench/quick_profile.py --model smollm2-135m-instruct --threads 1 --eval-n 10

Runs, in a fresh subprocess with a fresh (temporary) checkpoint folder, the command the "no profile" warning
prints (``pasta-lens profile --model M --preset quick --threads T --out TMP``: model load, attribution, the
metric-and-fluency-floor selection, all counted), then prints

- the wall time of that command and its ratio to the 600 s budget, with a verdict line;
- the heads, k, strategy and schedule the preset chose, and whether the chosen point kept the fluency floor;
- CounterFact ES / PS / fluency of zero-shot vs the quick profile on ``--eval-n`` examples of ``--eval-split``
  (default: test, examples the selection never saw: choosing on validation and reporting on it would flatter);
- the load average (1/5/15 min) before and after, and the CPU time the run used: the budget is for 2 cores, and
  on a shared machine other jobs take some of them, so a wall time means "2 idle cores" only if the load average
  is low. CPU time is no better a yardstick under load: OpenMP threads spin-wait for a core and burn CPU time
  without progress, so with other jobs running it overstates the work.

The evaluation after the profile is not part of the timed budget. ``--out FILE`` also writes the report there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_S = 600.0


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min; {os.cpu_count()} cores)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gemma-3-270m", help="model name (default gemma-3-270m)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the profiling run (default 2)")
    parser.add_argument("--eval-n", type=int, default=20, help="CounterFact examples to compare on (default 20)")
    parser.add_argument("--eval-split", default="test", choices=("validation", "test"), help="default test")
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args()

    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    with tempfile.TemporaryDirectory(prefix="quick_profile_") as tmp:
        out = Path(tmp) / "quick.json"
        command = [
            sys.executable, "-m", "pasta_lens.cli", "profile", "--model", args.model, "--preset", "quick",
            "--threads", str(args.threads), "--out", str(out), "--quiet",
        ]  # fmt: skip
        say(f"command: {shlex.join(['pasta-lens'] + command[3:])}")
        say(f"load average before: {load_average()}")
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = usage.ru_utime + usage.ru_stime
        say(f"load average after:  {load_average()}")
        if done.returncode != 0:
            say(f"FAILED (exit {done.returncode}) after {wall:.0f} s:\n{done.stderr[-3000:]}")
            return 1
        say(done.stdout.strip())
        profile = json.loads(out.read_text())
    prov = profile["provenance"]
    say(
        f"wall time: {wall:.0f} s = {wall / BUDGET_S:.2f} x the {BUDGET_S:.0f} s budget "
        f"(recorded: profiling {prov.get('profiling_wall_time_s')} s, selection {prov.get('selection_wall_time_s')} s)"
    )
    say(
        f"CPU time of the run: {cpu:.0f} s (user + system) = {cpu / wall:.2f} cores busy on average (spin-waiting "
        "included: under load it overstates the work)"
    )
    heads = [tuple(h) for h in profile["heads"]]
    say(
        f"chosen: k={profile['k']} ({profile['strategy']}), schedule {prov.get('schedule')}, {len(heads)} heads "
        f"{heads}; fluency floor met: {prov.get('fluency_floor_met')}; tasks {profile['tasks']}"
    )
    curve = prov.get("metric_curve", {})
    for point in curve.get("points", []):
        say(
            f"  candidate k={point['k']:>3} {point['schedule']:<7} heads={point['n_heads']:>2} "
            f"score={point['score']:.3f} fluency ratio={point['fluency_ratio']} passes={point['passes_floor']}"
        )
    if "unsteered_score" in curve:
        say(f"  unsteered score={curve['unsteered_score']:.3f} fluency={curve.get('unsteered_fluency')}")

    import torch

    torch.set_num_threads(args.threads)
    from pasta_lens import load_model
    from pasta_lens.evaluation import evaluate
    from pasta_lens.head_profile import HeadProfile

    started = time.perf_counter()
    model = load_model(args.model)
    with tempfile.TemporaryDirectory(prefix="quick_profile_eval_") as tmp:
        path = Path(tmp) / "quick.json"
        path.write_text(json.dumps(profile))
        result = evaluate(
            model,
            ["counterfact"],
            ["zero-shot", "pasta"],
            split=args.eval_split,
            n=args.eval_n,
            profile=HeadProfile.load(path),
            progress=False,
        )
    table = result.summary["tasks"]["counterfact"]
    say(f"CounterFact, {args.eval_split} split, n={args.eval_n} ({time.perf_counter() - started:.0f} s):")
    for method in ("zero-shot", "pasta"):
        m = table[method]
        say(
            f"  {'zero-shot' if method == 'zero-shot' else 'quick profile':<14} ES {100 * m['es']:5.1f}  "
            f"PS {100 * m['ps']:5.1f}  fluency {m['fluency']:.2f}"
        )
    verdict = "FITS" if wall <= BUDGET_S else f"OVER by {wall - BUDGET_S:.0f} s"
    say(
        f"verdict: quick profile of {args.model} in {wall:.0f} s on {args.threads} threads: {verdict} the "
        f"{BUDGET_S:.0f} s budget; load average {load_average()}"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
