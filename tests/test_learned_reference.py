"""The learner's output is pinned: fixed small ``pasta-lens profile --method learned`` commands on the tiny Llama
must write the profiles stored in ``tests/fixtures/learned_reference/``, bit for bit.

Those files were written by the learner as it was before ``pasta_lens/profiling/learned.py`` became the
``pasta_lens/profiling/learned/`` package (one job per module, a ``LearnedConfig`` in place of the keywords), by this
module run as a script against that code::

    python -m tests.test_learned_reference tests/fixtures/learned_reference

so the split is checked against the code it replaced, never against itself. Each command exercises a different part
of the loss: the defaults; every extra task term with a gain cap, a schedule and non-default optimisation settings;
learning on a base profile with both kinds of protected task, their own continuations and a pool per task; and
training on the model's own corrected answers. Compared: the heads, every per-head alpha (full float32), the score
tables, the initial logits, the loss summary, the settings, the method line and the recorded command. Not compared:
the date, the library version and wall times.

One intra-op thread (``--threads 1``) keeps the float sums in one order. A deliberate change of the learned
strengths rewrites the fixtures with the command above and says so in its commit.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "learned_reference"

RUNS: dict[str, list[str]] = {
    "defaults": ["--tasks", "json,counterfact", "--steps", "3", "--keep-below", "0.999"],
    "terms": ["--tasks", "json,counterfact", "--steps", "3", "--per-step", "2", "--lr", "0.3", "--kl-weight", "0.5",
              "--sparsity", "0.02", "--keep-below", "0.99", "--schedule", "prompt", "--end-turn", "--gain-cap",
              "1.0", "--close-weight", "0.5", "--early-weight", "0.3", "--focus-weight", "0.5", "--seed", "1",
              "--init-bias", "-1", "--init-scale", "4", "--alpha-min", "0.05", "--checkpoint-every", "1"],
    "protect": ["--tasks", "json", "--steps", "2", "--sparsity", "0", "--kl-weight", "0", "--lr", "0.5",
                "--keep-below", "0.999", "--init-bias", "0", "--schedule", "prompt", "--end-turn",
                "--base-profile", "BASE", "--protect-gen", "3", "--protect", "pronoun",
                "--protect-base", "counterfact", "--protect-each", "--protect-weight", "0.7"],
    "own": ["--tasks", "json,pronoun", "--steps", "2", "--sparsity", "0", "--kl-weight", "0", "--lr", "0.5",
            "--keep-below", "0.999", "--init-bias", "0", "--schedule", "prompt", "--end-turn", "--own-targets", "3"],
}
VOLATILE = ("date", "library_version", "weights_hash")
"""Keys that differ between two identical runs (date, version) or between the two TransformerLens worlds for the
same saved tiny model (``weights_hash`` hashes the model's parameters as TransformerLens names them; the
reference was written on 4.3); every head, alpha, score, loss and setting is still compared exactly."""


def write_profiles(out_dir: Path, names=tuple(RUNS)) -> None:
    """Run the commands of ``names`` with the installed pasta_lens and write their profiles to ``out_dir``, the
    temporary paths replaced by TINY, BASE and WORK (so that files of two runs compare)."""
    from pasta_lens import HeadProfile
    from pasta_lens.cli import main
    from tests.tiny import tiny_hf_model

    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="learned_reference_"))
    tiny = work / "tiny"
    hf, tok = tiny_hf_model("llama")
    hf.save_pretrained(tiny)
    tok.save_pretrained(tiny)
    base = HeadProfile(model_name="tiny", n_layers=3, n_heads=4, heads=[(0, 1), (2, 3)], alpha=0.01,
                       tasks=("counterfact",), provenance={"schedule": "prompt"}).save(work / "base.json")
    common = ["profile", "--model", str(tiny), "--n", "2", "--method", "learned", "--quiet", "--threads", "1"]
    for name in names:
        out = work / f"{name}.json"
        argv = common + [str(base) if a == "BASE" else a for a in RUNS[name]] + ["--out", str(out)]
        if main(argv) != 0:
            raise RuntimeError(f"pasta-lens {' '.join(argv)} failed")
        text = out.read_text().replace(str(tiny), "TINY").replace(str(base), "BASE").replace(str(work), "WORK")
        (out_dir / f"{name}.json").write_text(text)


def comparable(profile: dict) -> dict:
    """The profile without what differs between two identical runs (date, version, wall times)."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE and "wall_time" not in k}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(profile)


def differences(got, want, path="") -> list[str]:
    """Where two JSON values differ, as ``path: got != want`` lines (floats compared exactly)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}.{k}: missing" for k in want if k not in got]
        out += [f"{path}.{k}: unexpected" for k in got if k not in want]
        return out + [d for k in want if k in got for d in differences(got[k], want[k], f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{path}[{i}]")]
    return [] if got == want else [f"{path}: {str(got)[:80]} != {str(want)[:80]}"]


@pytest.fixture(scope="module")
def profiles(tmp_path_factory):
    out = tmp_path_factory.mktemp("learned_reference")
    write_profiles(out)
    return out


@pytest.mark.parametrize("name", list(RUNS))
def test_learned_profile_equals_the_reference(profiles, name):
    want = comparable(json.loads((FIXTURES / f"{name}.json").read_text()))
    got = comparable(json.loads((profiles / f"{name}.json").read_text()))
    found = differences(got, want)
    assert not found, f"{name}: {len(found)} differences from the reference, e.g. " + "; ".join(found[:5])


def test_the_comparison_sees_a_changed_alpha():
    """The comparison is exact: one per-head alpha moved by 1e-9 is a difference."""
    want = comparable(json.loads((FIXTURES / "terms.json").read_text()))
    got = json.loads(json.dumps(want))
    got["head_alphas"][0][2] += 1e-9
    assert len(differences(got, want)) == 1
    assert differences(want, want) == []


if __name__ == "__main__":
    write_profiles(Path(sys.argv[1]))
