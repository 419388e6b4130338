"""The torchrun commands of docs/distributed.md, run as typed on SmolLM2 (2 CPU processes, gloo), equal the
single-process run.

The single-process reference is computed in this process on the session's SmolLM2 (the library calls the CLI
makes, with the CLI's defaults), which saves two model loads: the test is the slowest of the suite as it is.
"""

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import torchrun

ROOT = Path(__file__).resolve().parents[1]


def documented_commands() -> list[list[str]]:
    """The commands between the tested-commands markers of docs/distributed.md, continuation lines joined."""
    text = (ROOT / "docs" / "distributed.md").read_text()
    block = text.split("<!-- tested-commands:start -->")[1].split("<!-- tested-commands:end -->")[0]
    body = block.split("```bash\n")[1].split("```")[0]
    return [shlex.split(line) for line in body.replace("\\\n", " ").splitlines() if line.strip()]


def _run(cmd, cwd):
    """The README's ``torchrun ARGS`` as :func:`tests.conftest.torchrun` runs it: this interpreter's
    torchrun, on a free rendezvous port (``--standalone``) instead of the default 29500; nothing else changes."""
    assert cmd[0] == "torchrun" and cmd[1:3] == ["--nproc-per-node", "2"]
    done = subprocess.run([*torchrun(2), *cmd[3:]], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{shlex.join(cmd)}\n{done.stderr[-3000:]}"
    assert "still referenced after destroy_process_group" not in done.stderr
    return done


def _opt(cmd, name):
    return cmd[cmd.index(name) + 1]


@pytest.mark.slow
def test_readme_torchrun_commands_equal_one_process(smollm2, tmp_path):
    from pasta_lens import HeadProfile, profile_heads
    from pasta_lens.evaluation import evaluate
    from pasta_lens.cli import build_parser
    from pasta_lens.tasks import get_task

    profile_cmd, eval_cmd = documented_commands()
    for cmd in (profile_cmd, eval_cmd):
        assert cmd[:5] == ["torchrun", "--nproc-per-node", "2", "-m", "pasta_lens.cli"]
        _run(cmd, tmp_path)

    n = int(_opt(profile_cmd, "--n-examples"))
    two = HeadProfile.load(tmp_path / _opt(profile_cmd, "--out"))
    assert two.provenance["processes"] == 2 and two.n_examples == {"json": n}
    bios = build_parser().parse_args(profile_cmd[5:]).bios  # the biographies the CLI profiled on (its default)
    examples = get_task("json", bios=bios).profiling_examples(smollm2, split="train", n=n, seed=0)
    # torchrun starts its workers with OMP_NUM_THREADS=1: score the reference with one thread too, so both sum in
    # the same order (with torch's default 2 threads here, fp32 exact scores differed by up to 1.1e-5 in CI)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = profile_heads(smollm2, examples, "hybrid", top_m=int(_opt(profile_cmd, "--top-m")), progress=False)
    finally:
        torch.set_num_threads(threads)
    diff = (two.score_table("json") - one.scores).abs().max()
    print(f"2 processes vs 1: max |score difference| {float(diff):.3g}")  # reported in results/distributed.md
    torch.testing.assert_close(two.score_table("json"), one.scores, rtol=1e-4, atol=1e-5)
    assert set(two.heads) == set(one.top(int(_opt(profile_cmd, "--k"))))

    out = tmp_path / _opt(eval_cmd, "--out")
    rows = [json.loads(x) for x in (out / "examples.jsonl").read_text().splitlines()]
    ref = evaluate(
        smollm2,
        ["json"],
        _opt(eval_cmd, "--baselines").split(","),
        n=int(_opt(eval_cmd, "--n-examples")),
        profile=_opt(eval_cmd, "--profile"),
        batch_size=int(_opt(eval_cmd, "--batch-size")),
        max_new_tokens=int(_opt(eval_cmd, "--max-new-tokens")),
        progress=False,
    )
    assert len(rows) == len(ref.rows) == 2 * 2 and len({(r["config"], r["uid"]) for r in rows}) == 4
    assert [(r["config"], r["outputs"]) for r in rows] == [(r["config"], r["outputs"]) for r in ref.rows]
    assert json.loads((out / "summary.json").read_text())["tasks"] == json.loads(json.dumps(ref.summary))["tasks"]
