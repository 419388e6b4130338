"""Wall time of a full head profile of SmolLM2-135M-Instruct against a 20-minute budget, and whether the profile
comes out the same when it is rebuilt from the command it records.

    python bench/profile_budget.py [--threads 2]                      # the shipped -attribution profile
    python bench/profile_budget.py --threads 1 --profile smollm2-135m-instruct          # the shipped default
    python bench/profile_budget.py --threads 1 --profile smollm2-135m-instruct-learned  # experiments/profiles/
    python bench/profile_budget.py --profile path/to/profile.json

Runs, in a fresh subprocess with a fresh (temporary) checkpoint folder, the ``pasta-lens profile`` command that
made the profile (its recorded ``command``; by default that of the shipped
``profiles/smollm2-135m-instruct-attribution.json``: attribution scores of all 270 heads on 100 train examples per
task for json, pronoun, biasbios and counterfact, then ``--k auto`` on 10 validation examples per task), writing the profile to a temporary file. It prints

- the wall time of the whole command (model load, scoring or learning, validation) and its ratio to 1,200 s;
- the profiling (or learning) wall time the profile records;
- whether the rebuilt profile selects the same heads with the same k (and, for a ``--method learned`` profile, the
  same per-head alphas) as the one it rebuilds, and the largest difference of any per-task score;

and writes them, with the load average before and after (figures mean "idle" only if it is low), to ``--out``
(default ``runs/profile_budget/NAME.md``; the consolidated table is ``results/profiling.md``).
``--threads`` is the intra-op thread count of the one process (2 on an idle 2-core machine; 1 when other jobs run).
``--profile`` takes a registry name (``profiles/NAME.json``), the name of an earlier profile kept in
``experiments/profiles/NAME.json``, or a path to a profile file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROFILE = "smollm2-135m-instruct-attribution"
BUDGET_S = 1200.0


def profile_path(name: str) -> Path:
    """The file of ``name``: a path to a profile file, a registry name (``profiles/NAME.json``), or the name of an
    earlier profile kept outside the package (``experiments/profiles/NAME.json``)."""
    if name.endswith(".json"):
        return Path(name)
    for folder in (REPO / "profiles", REPO / "experiments" / "profiles"):
        if (folder / f"{name}.json").is_file():
            return folder / f"{name}.json"
    raise SystemExit(f"no profile named {name!r} in profiles/ or experiments/profiles/: give a registry name or a "
                     "path to a profile JSON file")


def recorded_command(profile: dict) -> list[str]:
    """The profile's ``pasta-lens`` command as argv (without ``pasta-lens``), minus ``--out`` (the caller names the
    file the rebuild writes), plus ``--bios named`` when a ``profile`` command names no ``--bios`` (it was recorded
    before the option existed, when every profile was made on the named biographies; the option's default is now
    ``implied``). A profile made by anything other than ``pasta-lens`` cannot be rebuilt here."""
    argv = shlex.split(profile["command"])
    if argv[:1] != ["pasta-lens"]:
        raise ValueError(f"the profile's command is not a pasta-lens command ({profile['command'][:60]!r}...): only "
                         "profiles made by `pasta-lens profile` can be rebuilt")
    argv = argv[1:]
    drop = ("--out",)
    out = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in drop:
            skip = True
            continue
        if arg.startswith(tuple(f"{d}=" for d in drop)):
            continue
        out.append(arg)
    if out[:1] == ["profile"] and not any(a == "--bios" or a.startswith("--bios=") for a in out):
        out += ["--bios", "named"]  # recorded before --bios existed: such profiles were made on the named bios
    return out


def rebuild_argv(profile: dict, tmp: Path, threads: int, out_profile: Path) -> list[str]:
    """The argv that rebuilds ``profile`` into ``out_profile`` with ``threads`` threads and scratch in ``tmp``: its
    ``pasta-lens`` command through ``python -m pasta_lens.cli`` with a fresh checkpoint folder."""
    argv = recorded_command(profile)
    return [sys.executable, "-m", "pasta_lens.cli", *argv, "--threads", str(threads),
            "--checkpoint-dir", str(tmp / "ckpt"), "--out", str(out_profile)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="where to write the record (default runs/profile_budget/NAME.md)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"registry name, name in experiments/profiles/ or "
                                                                     f"path of the profile to rebuild (default "
                                                                     f"{DEFAULT_PROFILE})")
    args = parser.parse_args()
    if args.out is None:
        args.out = str(REPO / "runs" / "profile_budget" / f"{Path(args.profile).stem}.md")

    shipped = json.loads(profile_path(args.profile).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        out_profile = Path(tmp) / "profile.json"
        argv = rebuild_argv(shipped, Path(tmp), args.threads, out_profile)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        load_before = os.getloadavg()[0]
        print("running:", " ".join(shlex.quote(a) for a in argv[1:]), flush=True)
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, cwd=REPO)
        wall = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        rebuilt = json.loads(out_profile.read_text())

    def heads(p):
        return sorted(tuple(h) for h in p["heads"])

    same_heads = heads(rebuilt) == heads(shipped)
    k_shipped, k_rebuilt = shipped.get("k"), rebuilt.get("k")
    max_diff = 0.0
    for task, table in shipped["scores"].items():
        for a_row, b_row in zip(table, rebuilt["scores"][task]):
            max_diff = max(max_diff, max(abs(a - b) for a, b in zip(a_row, b_row)))
    alphas = {tuple(h[:2]): h[2] for h in shipped.get("head_alphas", [])}
    alpha_diff = max((abs(alphas[tuple(h[:2])] - h[2]) for h in rebuilt.get("head_alphas", [])
                      if tuple(h[:2]) in alphas), default=None)
    per_task = rebuilt["provenance"].get("profiling_wall_time_s_per_task", {})
    prov = rebuilt["provenance"]
    total = next((prov[k] for k in ("total_wall_time_s", "profiling_wall_time_s", "learning_wall_time_s") if k in prov),
                 None)
    lines = [
        f"machine: {os.cpu_count()} cores ({platform.machine()}), 1-min load average {load_before:.2f} before, "
        f"{load_after:.2f} after; {args.threads} thread(s)",
        f"command: {shlex.join(['pasta-lens', *argv[3:]])}",
        f"whole command wall time: {wall:.1f} s = {wall / 60:.1f} min; / budget {BUDGET_S:.0f} s = {wall / BUDGET_S:.3f}"
        f" ({'within' if wall <= BUDGET_S else 'OVER'} the 20-min budget)",
        f"recorded by the profile: scoring per task (s) {json.dumps(per_task)}; total profiling (or learning) {total} s",
        f"same heads as the profile rebuilt: {same_heads} ({len(heads(rebuilt))} vs {len(heads(shipped))}); "
        f"k {k_rebuilt} vs {k_shipped}; largest per-task score difference {max_diff:.3g}"
        + (f"; largest per-head alpha difference {alpha_diff:.3g}" if alpha_diff is not None else ""),
    ]
    print("\n".join(lines))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    which = "" if args.profile == DEFAULT_PROFILE else f" --profile {args.profile}"
    text = (f"# `{args.profile}` rebuilt from its own command, against the 20-minute budget (SmolLM2-135M-Instruct, "
            f"CPU)\n\nCommand: `python bench/profile_budget.py --threads {args.threads}{which}`  \nDate: {stamp}\n\n```\n"
            + "\n".join(lines) + "\n```\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
