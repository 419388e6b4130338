"""The README's torchrun commands, run as typed on SmolLM2 (2 CPU processes, gloo), equal the single-process run."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    """The commands between the README's tested-commands markers, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- tested-commands:start -->")[1].split("<!-- tested-commands:end -->")[0]
    body = block.split("```bash\n")[1].split("```")[0]
    return [shlex.split(line) for line in body.replace("\\\n", " ").splitlines() if line.strip()]


def _run(cmd, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{shlex.join(cmd)}\n{done.stderr[-3000:]}"
    return done


def _one_process(cmd, out):
    """The same command in one process: ``python -m pasta_lens.cli ARGS`` with another --out."""
    args = cmd[cmd.index("pasta_lens.cli") + 1:]
    args[args.index("--out") + 1] = out
    return [sys.executable, "-m", "pasta_lens.cli", *args]


@pytest.mark.slow
def test_readme_torchrun_commands_equal_one_process(tmp_path):
    from pasta_lens import HeadProfile

    profile_cmd, eval_cmd = readme_commands()
    for cmd in (profile_cmd, eval_cmd):
        assert cmd[:5] == ["torchrun", "--nproc-per-node", "2", "-m", "pasta_lens.cli"]
        _run(cmd, tmp_path)
    _run(_one_process(profile_cmd, "one.json"), tmp_path)
    two = HeadProfile.load(tmp_path / profile_cmd[profile_cmd.index("--out") + 1])
    one = HeadProfile.load(tmp_path / "one.json")
    assert two.provenance["processes"] == 2 and one.provenance["processes"] == 1
    assert two.n_examples == one.n_examples == {"json": 4}
    assert two.heads == one.heads
    diff = (two.score_table("json") - one.score_table("json")).abs().max()
    print(f"2 processes vs 1: max |score difference| {float(diff):.3g}")  # reported in results/distributed.md
    torch.testing.assert_close(two.score_table("json"), one.score_table("json"), rtol=1e-4, atol=1e-5)

    _run(_one_process(eval_cmd, "one"), tmp_path)
    out = tmp_path / eval_cmd[eval_cmd.index("--out") + 1]
    rows = {d: [json.loads(x) for x in (d / "examples.jsonl").read_text().splitlines()] for d in (out, tmp_path / "one")}
    assert len(rows[out]) == 2 * 4 and len({(r["config"], r["uid"]) for r in rows[out]}) == 8
    assert [r["outputs"] for r in rows[out]] == [r["outputs"] for r in rows[tmp_path / "one"]]
    assert json.loads((out / "summary.json").read_text()) == json.loads((tmp_path / "one" / "summary.json").read_text())
