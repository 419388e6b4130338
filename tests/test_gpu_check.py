"""bench/gpu_check.sh in its CPU mode: the checks a GPU run makes, on tiny saved models, and a verdict that can fail.

No GPU is available to the tests; ``--device cpu`` runs exactly the GPU path's checks (load in fp32 and bf16,
steering parity, cached vs uncached, engine choice, attribution, evaluation, peak memory) on a tiny Llama saved
to disk, which must PASS, and on a tiny GPT-J, whose ``hook_pattern`` edits the bridge discards, which must FAIL.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _saved(path, family):
    from tests.families import family_hf_model
    from tests.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama") if family == "tiny-llama" else family_hf_model(family)
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_cpu_mode_passes_on_a_tiny_llama(gpu_check, tmp_path, capsys):
    model = _saved(tmp_path / "llama", "tiny-llama")
    assert gpu_check.main(["--device", "cpu", "--model", model, "--fast"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    verdict = lines[-1]
    assert verdict.startswith("GPU CHECK PASS: device=cpu")
    for part in ("steer parity fp32", "cached==uncached fp32 6/6", "engine fp32 fast, same text",
                 "bf16 hooks, fast engine refused", "attribution", "CounterFact n=2", "peak"):
        assert part in verdict, part
    assert sum(line.startswith(("fp32: ", "bf16: ")) for line in lines) == 2  # both dtypes ran


def test_the_script_fails_a_model_it_cannot_steer(tmp_path):
    model = _saved(tmp_path / "gptj", "gptj")
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    run = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), "--device", "cpu", "--model", model,
                          "--fast"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 1, run.stdout + run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("GPU CHECK FAIL (ValueError: Editing blocks.0.attn.hook_pattern does not change")


def _results(**changes):
    base = dict(parity=1e-7, effect=0.3, cached_equal=16, n_new=16, engine="hf", fast_equal=True,
                attribution_s=1.0, attribution_finite=True, top_sign=True, eval_s=1.0, peak_gib=1.0,
                eval={"zero-shot": {"n": 8, "es": 0.5}, "pasta": {"n": 8, "es": 0.9}})
    bf16 = dict(base, parity=0.05, engine="hooks, fast engine refused (not fp32)")
    bf16.pop("fast_equal")
    fp32 = dict(base)
    for key, value in changes.items():
        tag, field = key.split("__")
        (fp32 if tag == "fp32" else bf16)[field] = value
    return {"fp32": fp32, "bf16": bf16}


@pytest.mark.parametrize("changes,problem", [
    ({}, None),
    ({"fp32__parity": 2e-3}, "fp32 parity"),
    ({"bf16__parity": 0.3}, "bf16 parity"),
    ({"bf16__effect": 0.0}, "bf16 steering effect"),
    ({"fp32__cached_equal": 15}, "fp32 cached != uncached from token 15"),
    ({"fp32__fast_equal": False}, "fast engine text != hooks text"),
    ({"bf16__engine": "hf"}, "bf16 took the fast engine"),
    ({"fp32__top_sign": False}, "fp32 attribution"),
    ({"bf16__attribution_finite": False}, "bf16 attribution"),
    ({"fp32__eval": {"zero-shot": {"n": 8}}}, "fp32 evaluation incomplete"),
])
def test_each_requirement_can_fail_the_verdict(gpu_check, changes, problem):
    ok, line = gpu_check.verdict(_results(**changes), 100.0, "cuda", 300.0)
    assert ok == (problem is None)
    assert line.startswith("GPU CHECK PASS" if ok else "GPU CHECK FAIL (")
    if problem:
        assert problem in line.split("): ")[0]


def test_over_budget_fails_on_a_gpu_only(gpu_check):
    assert not gpu_check.verdict(_results(), 301.0, "cuda", 300.0)[0]
    assert gpu_check.verdict(_results(), 301.0, "cpu", 300.0)[0]
    assert gpu_check.verdict(_results(bf16__cached_equal=3), 100.0, "cuda", 300.0)[0]  # bf16: reported only
