"""Data-parallel profiling and evaluation over processes (torch.distributed, gloo on CPU) on the tiny model.

The ground truth is always the single-process run: a 2-process run must return the same scores and rows, and a
checkpointed chain of runs with different process counts must compute exactly the examples a chain of
single-process runs computes (none twice, none lost).
"""

import json
import subprocess
from pathlib import Path

import pytest
import torch

from pasta_lens.distributed import (
    ShardedCheckpoint,
    World,
    compute_missing,
    current_world,
    map_batches,
    rank_file,
    rank_files,
)
from pasta_lens.evaluation import evaluate
from pasta_lens.objectives import ProfilingExample
from pasta_lens.profiling import profile_heads
from pasta_lens.tasks import get_task
from tests.conftest import torchrun
from tests.test_evaluation import HEADS, short_bios
from tests.tiny import tiny_model

KW = dict(method="hybrid", top_m=3, heads_per_batch=4, progress=False)
EVAL = dict(heads=HEADS, batch_size=1, max_new_tokens=3, progress=False)


def _examples(model, n):
    """Distinct profiling examples (biasbios on short synthetic bios: no data files needed)."""
    return list(get_task("biasbios", bios=short_bios()).profiling_examples(model, split="train", n=n))


def _recording(examples, calls):
    """The same examples; each objective call appends ``(example index, batch rows)`` to ``calls``."""

    def wrap(i, objective):
        def obj(logits):
            calls.append((i, int(logits.shape[0])))
            return objective(logits)

        obj.key = objective.key  # the checkpoint identifies the objective by its key (no probe call recorded)
        return obj

    return [
        ProfilingExample(ex.tokens, ex.key_mask, wrap(i, ex.objective), ex.attention_mask, ex.task)
        for i, ex in enumerate(examples)
    ]


def _tasks():
    return [get_task("json", bios=short_bios()), get_task("biasbios", bios=short_bios())]


# ------------------------------------------------------------------------------------------- no processes
def test_world_without_a_process_group_is_one_process():
    assert current_world() == World(0, 1) and World().is_main
    with pytest.raises(ValueError, match="rank < size"):
        World(2, 2)
    batches = list(map_batches(list(range(5)), 2, lambda b: [x * 10 for x in b], World()))
    assert batches == [([0, 1], [0, 10]), ([2, 3], [20, 30]), ([4], [40])]


def test_rank_files_are_found_beside_the_main_file(tmp_path):
    main = tmp_path / "json.ckpt"
    assert rank_file(main, 0) == main and rank_file(main, 3) == tmp_path / "json.rank3.ckpt"
    for name in ["json.rank3.ckpt", "json.ckpt", "json.rank10.ckpt", "cf.rank1.ckpt", ".json.rank1.ckpt.x.tmp"]:
        (tmp_path / name).write_text("x")
    assert [p.name for p in rank_files(main)] == ["json.ckpt", "json.rank3.ckpt", "json.rank10.ckpt"]


class _Store:
    def __init__(self, path, data):
        self.path, self.data = path, data.setdefault(str(path), {})

    def get(self, phase, key):
        return self.data.get((phase, key))

    def put(self, phase, key, value):
        self.data[(phase, key)] = value


def test_sharded_checkpoint_reads_every_rank_file_and_writes_its_own(tmp_path):
    files: dict = {}
    main = tmp_path / "run.ckpt"
    for p in (main, rank_file(main, 1), rank_file(main, 2)):
        p.write_text("")  # so that rank_files finds them
    files[str(main)] = {("attribution", "a"): 1}
    files[str(rank_file(main, 2))] = {("attribution", "c"): 3}
    ckpt = ShardedCheckpoint(main, World(1, 2), lambda p: _Store(p, files))
    assert ckpt.get("attribution", "a") == 1 and ckpt.get("attribution", "c") == 3
    assert ckpt.get("attribution", "b") is None
    ckpt.put("attribution", "b", 2)
    ckpt.remember("attribution", "d", 4)
    assert files[str(rank_file(main, 1))] == {("attribution", "b"): 2}  # only its own results, only its file
    assert ckpt.get("attribution", "d") == 4 and ("attribution", "d") not in files[str(main)]
    compute_missing(ckpt, "attribution", ["x"], lambda j: 1 / 0, World())  # one process: the caller's loop


# ---------------------------------------------------------------------------------------------- 2 processes
def _worker(rank, world_size, root, backend="bridge"):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{root}/rendezvous", rank=rank, world_size=world_size)
    try:
        model = tiny_model("llama", backend=backend)  # the parent's backend: same weights, same checkpoints
        calls: list = []
        scores = profile_heads(
            model, _recording(_examples(model, 4), calls), checkpoint=root / "mixed" / "run.ckpt", **KW
        )
        others = {
            m: profile_heads(model, _examples(model, 3), m, heads_per_batch=4, progress=False)
            for m in ("attribution", "exact")
        }  # no checkpoint: in memory only
        res = evaluate(model, _tasks(), ["zero-shot", "pasta"], n=4, out_dir=root / "eval", **EVAL)
        torch.save(
            {
                "calls": calls,
                "scores": scores,
                "others": others,
                "rows": list(res.rows),
                "summary": res.summary,
                "world": current_world(),
            },
            root / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one_and_resume_across_process_counts(llama, backend, tmp_path):
    examples = _examples(llama, 5)
    reference = {n: profile_heads(llama, examples[:n], **KW) for n in (4, 5)}
    # The ground truth of "none twice, none lost": a chain of single-process runs on one checkpoint (2, 4, 5 ex.)
    single, single_calls = tmp_path / "single" / "run.ckpt", {}
    for n in (2, 4, 5):
        single_calls[n] = []
        profile_heads(llama, _recording(examples[:n], single_calls[n]), checkpoint=single, **KW)
    # The same chain with the middle run on 2 processes: 1 process, 2 processes, 1 process.
    mixed = tmp_path / "mixed" / "run.ckpt"
    profile_heads(llama, examples[:2], checkpoint=mixed, **KW)
    evaluate(llama, _tasks(), ["zero-shot", "pasta"], n=2, out_dir=tmp_path / "eval", **EVAL)  # rows to resume
    torch.multiprocessing.spawn(_worker, args=(2, tmp_path, backend), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [World(0, 2), World(1, 2)]

    # profiling: every rank returns the single-process result; the work was split, none done twice or lost
    for r in ranks:
        got, ref = r["scores"], reference[4]
        torch.testing.assert_close(got.scores, ref.scores, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got.per_example, ref.per_example, rtol=1e-5, atol=1e-6)
        assert torch.equal(got.exact, ref.exact) and got.ranking()[:3] == ref.ranking()[:3]
    assert torch.equal(ranks[0]["scores"].scores, ranks[1]["scores"].scores)
    for method in ("attribution", "exact"):
        ref = profile_heads(llama, examples[:3], method, heads_per_batch=4, progress=False)
        for r in ranks:
            torch.testing.assert_close(r["others"][method].per_example, ref.per_example, rtol=1e-5, atol=1e-6)
            assert r["others"][method].baseline == pytest.approx(ref.baseline, abs=1e-6)
    assert ranks[0]["calls"] and ranks[1]["calls"]
    assert sorted(ranks[0]["calls"] + ranks[1]["calls"]) == sorted(single_calls[4])
    assert sorted(p.name for p in mixed.parent.iterdir()) == ["run.ckpt", "run.rank1.ckpt"]
    calls: list = []
    last = profile_heads(llama, _recording(examples, calls), checkpoint=mixed, **KW)  # back to 1 process
    assert sorted(calls) == sorted(single_calls[5])
    torch.testing.assert_close(last.scores, reference[5].scores, rtol=1e-5, atol=1e-6)

    # evaluation: one examples.jsonl (each row once: 2 resumed + 2 new per configuration), one summary
    ref = evaluate(llama, _tasks(), ["zero-shot", "pasta"], n=4, out_dir=tmp_path / "ref", **EVAL)
    lines = [json.loads(x) for x in (tmp_path / "eval" / "examples.jsonl").read_text().splitlines()]
    keys = [(r["config"], r["uid"]) for r in lines]
    assert len(keys) == len(set(keys)) == len(ref.rows) == 2 * 2 * 4
    by_key = {(r["config"], r["uid"]): r for r in ref.rows}
    for r in lines:
        assert r["outputs"] == by_key[(r["config"], r["uid"])]["outputs"]
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary == json.loads((tmp_path / "ref" / "summary.json").read_text())
    for r in ranks:
        assert json.loads(json.dumps(r["summary"])) == summary
        assert [(x["uid"], x["outputs"]) for x in r["rows"]] == [(x["uid"], x["outputs"]) for x in ref.rows]


# ------------------------------------------------------------------------------------------ torchrun + CLI
TEARDOWN = """
import json, os, sys, warnings
import torch
from pasta_lens.distributed import all_gather, process_group_from_env

def gloo_threads():
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return sorted(n for n in names if "gloo" in n)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with process_group_from_env() as world:
        import transformers.models.llama.modeling_llama  # what loading a model imports, group alive
        import torch.distributed.nn.functional  # its defaults bind group.WORLD when first imported
        during = gloo_threads()
        gathered = all_gather(world.rank, world)
after = gloo_threads()
with open(os.path.join(sys.argv[1], f"rank{world.rank}.json"), "w") as f:
    json.dump({"during": during, "after": after, "gathered": gathered,
               "warnings": [str(w.message) for w in caught]}, f)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread names from Linux's /proc")
def test_torchrun_teardown_frees_the_process_group_and_its_threads(tmp_path):
    """Under torchrun the CLI's process group is destroyed for real: no gloo thread is left when the process
    exits, even when a module that binds ``group.WORLD`` at import (torch.distributed.nn, imported by
    transformers' model modules) is first imported while the group is alive. A thread left behind still holds
    the last collective's tensors at exit, and on a busy machine it can drop one after the interpreter began to
    shut down: the rank then aborts ("terminate called without an active exception") after finishing its work."""
    script = tmp_path / "teardown.py"
    script.write_text(TEARDOWN)
    done = subprocess.run(
        [*torchrun(2), str(script), str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["gathered"] == [0, 1] and report["during"]  # a real gloo group ran, with its threads
        assert report["after"] == [], f"rank {rank}: gloo threads outlived the group: {report['after']}"
        assert report["warnings"] == []


def _torchrun(args, cwd):
    """``torchrun --nproc-per-node 2 -m pasta_lens.cli ARGS`` (see :func:`torchrun`); exit 0 from every rank and
    no warning that the process group outlived its teardown."""
    done = subprocess.run(
        [*torchrun(2), "-m", "pasta_lens.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "still referenced after destroy_process_group" not in done.stderr
    return done


@pytest.mark.slow  # tiny model, but two torchrun launches of 2 processes each: ~1 min on 2 busy cores
def test_torchrun_cli_profile_and_evaluate_equal_one_process(tiny_dir, tmp_path):
    from pasta_lens import HeadProfile
    from pasta_lens.cli import main

    args = [
        "--model",
        tiny_dir,
        "--tasks",
        "json,biasbios",
        "--method",
        "hybrid",
        "--top-m",
        "4",
        "--k",
        "4",
        "--quiet",
    ]
    _torchrun(["profile", "--n-examples", "3", *args, "--out", "two.json"], tmp_path)
    assert main(["profile", "--n", "3", *args, "--out", str(tmp_path / "one.json")]) == 0
    two, one = HeadProfile.load(tmp_path / "two.json"), HeadProfile.load(tmp_path / "one.json")
    assert two.heads == one.heads and two.provenance["processes"] == 2 and one.provenance["processes"] == 1
    for task in ("json", "biasbios"):
        torch.testing.assert_close(two.score_table(task), one.score_table(task), rtol=1e-5, atol=1e-6)
    assert {p.name for p in (tmp_path / "two.json.ckpt").iterdir()} == {
        "json.ckpt",
        "json.rank1.ckpt",
        "biasbios.ckpt",
        "biasbios.rank1.ckpt",
    }

    ev = [
        "evaluate",
        "--model",
        tiny_dir,
        "--tasks",
        "json",
        "--heads",
        "1:0,2:1",
        "--baselines",
        "zero-shot,pasta",
        "--max-new-tokens",
        "3",
        "--batch-size",
        "2",
    ]
    done = _torchrun([*ev, "--n-examples", "5", "--out", "two"], tmp_path)
    # rank 0 alone prints the report (a value table and a 95%-interval table, one row each per method)
    assert done.stdout.count("rows: two/examples.jsonl") == 1
    assert done.stdout.count("| PASTA, profile heads") == 2
    assert main([*ev, "--n", "5", "--out", str(tmp_path / "one")]) == 0
    rows = {
        name: [json.loads(x) for x in (tmp_path / name / "examples.jsonl").read_text().splitlines()]
        for name in ("one", "two")
    }
    assert len(rows["two"]) == 10 and [r["outputs"] for r in rows["two"]] == [r["outputs"] for r in rows["one"]]
    assert (tmp_path / "two" / "summary.json").read_text() == (tmp_path / "one" / "summary.json").read_text()
