"""The evaluation harness on the tiny random model: methods, candidate scoring, end to end, resume, CLI."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from pasta_lens.evaluation import (BASELINES, HeadSource, ablation_methods, candidate_logprobs, evaluate,
                                   load_source, method_plan, parse_method, ranked_heads)
from pasta_lens.spans import emphasize
from pasta_lens.steering import steer
from pasta_lens.tasks import Biography, CounterFactTask, get_task
from pasta_lens.tasks.bio_tasks import JsonTask

FIXTURES = Path(__file__).parent / "fixtures"
HEADS = [(2, 1), (1, 0), (2, 3)]


@pytest.fixture(scope="module")
def cf_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("cfdata")
    (root / "counterfact").mkdir()
    shutil.copy(FIXTURES / "counterfact_rome.json", root / "counterfact" / "rome_format.json")
    shutil.copy(FIXTURES / "counterfact_split.json", root / "counterfact" / "train.json")
    shutil.copy(FIXTURES / "counterfact_split.json", root / "counterfact" / "test.json")
    return CounterFactTask(data_dir=root)


def test_parse_method():
    assert [parse_method(m).steered for m in BASELINES] == [False] * 4 + [True] * 3
    m = parse_method("pasta:alpha=0.1,k=2")
    assert (m.heads, m.alpha, m.k) == ("profile", 0.1, 2) and m.label == "PASTA, profile heads (alpha=0.1,k=2)"
    assert parse_method("star").marking == "*" and parse_method("few-shot").few_shot == 3
    for bad, msg in [("pastaa", "Unknown method"), ("pasta:beta=1", "Bad option"), ("pasta:alpha=2", r"\(0, 1\]"),
                     ("zero-shot:alpha=0.1", "only apply"), ("pasta:k=0", "positive")]:
        with pytest.raises(ValueError, match=msg):
            parse_method(bad)
    assert ablation_methods((0.001, 0.01, 0.1), (5,)) == ["pasta:alpha=0.001", "pasta:alpha=0.1", "pasta:k=5"]


def test_method_plans_heads(llama):
    ranked = ranked_heads(HEADS)
    assert ranked == tuple(HEADS)  # a given list keeps its order (best first)
    source = load_source(HEADS, llama)
    heads = lambda spec, seed=0: method_plan(parse_method(spec), llama, source, seed=seed).heads  # noqa: E731
    assert method_plan(parse_method("zero-shot"), llama, source) is None
    assert len(heads("all-heads")) == 3 * 4
    assert heads("pasta:k=2") == ((1, 0), (2, 1))  # the first two given, as a (sorted) plan
    r1 = heads("random")
    assert len(r1) == 3 and r1 == heads("random")
    assert len({heads("random", seed=s) for s in range(5)}) > 1  # the seed chooses the set
    with pytest.raises(ValueError, match="needs a head profile"):
        method_plan(parse_method("pasta"), llama, HeadSource())
    with pytest.raises(ValueError, match="asks for 4 heads but the profile has 3"):
        method_plan(parse_method("pasta:k=4"), llama, source)

    class Profile:  # the HeadProfile surface used: sorted heads + per-task score tables
        heads = ((1, 0), (2, 1), (2, 3))
        scores = {"a": [[0] * 4, [5, 0, 0, 0], [0, 1, 0, 9]], "b": [[0] * 4, [1, 0, 0, 0], [0, 3, 0, 9]]}

    assert ranked_heads(Profile()) == ((2, 3), (1, 0), (2, 1))


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_candidate_logprobs_match_one_by_one(llama, reduce):
    task = get_task("biasbios", bios=short_bios())
    ex = task.examples("train", 1)[0]
    r = task.render(llama, task.prompt(ex))
    cands = [" nurse", " software engineer", " DJ", " a"]
    for heads in (None, HEADS):
        got = candidate_logprobs(llama, r, cands, reduce, heads, alpha=0.01)
        for cand, value in zip(cands, got):
            em = emphasize(llama, r.text, char_ranges=r.char_spans, prepend_bos=r.prepend_bos)
            ids = llama.tokenizer(cand, add_special_tokens=False)["input_ids"]
            tokens = torch.cat([em.tokens, torch.tensor([ids])], dim=1)
            n = em.tokens.shape[1]
            ctx = steer(llama, heads, em, 0.01) if heads else torch.inference_mode()
            with torch.inference_mode(), ctx:
                logp = torch.log_softmax(llama(tokens)[0, n - 1:-1].float(), -1)
            ref = sum(float(logp[i, t]) for i, t in enumerate(ids))
            assert value == pytest.approx(ref / len(ids) if reduce == "mean" else ref, abs=1e-4)
    assert candidate_logprobs(llama, r, cands, reduce, HEADS) != candidate_logprobs(llama, r, cands, reduce, None)


def short_bios(k=60):
    """Short biographies (the tiny tokenizer makes long ones slow), with names and gendered pronouns."""
    occs = ["nurse", "dj", "software_engineer", "poet", "architect"]
    return [Biography(uid=f"short:{i}", source="synthetic", name=f"Ana {i}", occupation=occs[i % 5], gender="F",
                      context=f"Ana {i} is a {occs[i % 5].replace('_', ' ')}. She works.", first_sentence_end=len(
                          f"Ana {i} is a {occs[i % 5].replace('_', ' ')}."), neutral="x") for i in range(k)]


def test_end_to_end_tiny(llama, tmp_path, cf_task):
    bios = short_bios()
    tasks = [get_task("json", bios=bios), get_task("pronoun", bios=bios), get_task("biasbios", bios=bios), cf_task]
    res = evaluate(llama, tasks, ["zero-shot", "star", "few-shot", "random", "pasta", "pasta:alpha=0.5"], n=2,
                   heads=HEADS, out_dir=tmp_path, batch_size=2, max_new_tokens=4, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 6 * 2 == len(res.rows)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == json.loads(json.dumps(res.summary))
    assert summary["tasks"]["json"]["pasta"]["n"] == 2 and summary["tasks"]["json"]["pasta"]["synthetic"]
    assert not summary["tasks"]["counterfact"]["pasta"]["synthetic"]
    assert summary["config"]["heads"]["pasta"] == sorted(list(h) for h in HEADS)
    assert summary["config"]["heads"]["zero-shot"] is None
    table = (tmp_path / "table.md").read_text()
    assert table == res.table and table.count("\n| ") == 2 * 6 + 1 and "†" in table
    assert "PASTA, profile heads" in table and "JSON † F.Acc (strict)" in table
    # 6 method rows, then the interval table's header and its 6 rows
    by = {(r["task"], r["method"], r["uid"]): r for r in rows}
    uid = tasks[0].examples("test", 1)[0].uid
    star, zero = by[("json", "star", uid)], by[("json", "zero-shot", uid)]
    assert "*Answer the occupation" in star["prompt"] and "*" not in zero["prompt"].split("assistant")[0][-300:]
    few = by[("json", "few-shot", uid)]["prompt"]
    assert few.count("<|im_start|>assistant") == 4  # 3 demonstrations + the query's generation prompt
    for r in rows:
        assert set(r["metrics"]) <= set(next(t for t in tasks if t.name == r["task"]).metrics)
    cf = by[("counterfact", "pasta", cf_task.examples("test", 1)[0].uid)]
    assert {"es", "ps0"} <= set(cf["outputs"]) and len(cf["outputs"]["es"]) == 2
    # greedy decoding is deterministic: the same configuration reproduces the same outputs from scratch
    again = evaluate(llama, [tasks[0]], ["pasta"], n=2, heads=HEADS, batch_size=1, max_new_tokens=4,
                     progress=False)
    assert [r["outputs"] for r in again.rows] == [by[("json", "pasta", r["uid"])]["outputs"] for r in again.rows]


class Interrupting(JsonTask):
    """A JSON task whose scoring dies on the third example: an interrupted run."""

    def __init__(self):
        super().__init__(bios=short_bios())
        self.calls = 0

    def metrics_from(self, example, results):
        self.calls += 1
        if self.calls == 3:
            raise KeyboardInterrupt
        return super().metrics_from(example, results)


def test_resume_after_interruption(llama, tmp_path):
    kw = dict(n=4, heads=HEADS, out_dir=tmp_path, batch_size=1, max_new_tokens=3, progress=False)
    with pytest.raises(KeyboardInterrupt):
        evaluate(llama, [Interrupting()], ["pasta"], **kw)
    path = tmp_path / "examples.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and not (tmp_path / "summary.json").exists()
    # mark a finished row, and leave a half-written line as a kill during a write would
    # plant an output the random tiny model never writes: if the row is reused, it is rescored as valid JSON
    first = json.loads(lines[0])
    first["outputs"]["output"] = '{"name": "x", "occupation": "nurse"}'
    path.write_text(json.dumps(first) + "\n" + lines[1] + "\n" + lines[1][: len(lines[1]) // 2])
    task = JsonTask(bios=short_bios())
    with pytest.warns(UserWarning, match="line 3, cut by an interruption"):
        res = evaluate(llama, [task], ["pasta"], **kw)
    assert len(res.rows) == 4 and res.rows[0]["metrics"]["f_acc"] == 1.0         # reused (and rescored)
    assert [r["uid"] for r in res.rows] == [e.uid for e in task.examples("test", 4)]
    assert res.summary["tasks"]["json"]["pasta"]["f_acc"] >= 1 / 4
    assert len(path.read_text().splitlines()) == 4  # 2 kept + 2 new rows: the cut line is gone, nothing recomputed
    assert all(json.loads(line)["uid"] for line in path.read_text().splitlines())
    # a different configuration does not reuse those rows
    other = evaluate(llama, [task], ["pasta:alpha=0.5"], **kw)
    assert other.rows[0]["outputs"]["output"] != first["outputs"]["output"]
    # nor does a changed prompt (another variant renders another prompt -> another config and prompt)
    short = evaluate(llama, [task], ["pasta"], **{**kw, "n": 1}, variant="short")
    assert short.rows[0]["outputs"]["output"] != first["outputs"]["output"]
    # resume=False recomputes its own rows only: the planted row is replaced, every other row is kept as it was
    before = path.read_text().splitlines()
    fresh = evaluate(llama, [task], ["pasta"], **{**kw, "n": 1}, resume=False)
    assert fresh.rows[0]["outputs"]["output"] != first["outputs"]["output"]  # recomputed, not the planted row
    after = path.read_text().splitlines()
    replaced = [line for line in before if json.loads(line)["uid"] == fresh.rows[0]["uid"]
                and json.loads(line)["config"] == fresh.rows[0]["config"]]
    assert len(replaced) == 1 and len(after) == len(before) == 9  # 4 pasta + 4 alpha=0.5 + 1 short
    assert sorted(after) == sorted([line for line in before if line not in replaced] + [json.dumps(fresh.rows[0])])


@pytest.mark.parametrize("bad,line", [("{}", 2), ('{"config": "c", "uid": "u"', 1), ("[1, 2]", 2)])
def test_malformed_rows_name_the_file_and_line(llama, tmp_path, bad, line):
    kw = dict(n=2, heads=HEADS, out_dir=tmp_path, batch_size=1, max_new_tokens=2, progress=False)
    task = JsonTask(bios=short_bios())
    evaluate(llama, [task], ["pasta"], **kw)
    path = tmp_path / "examples.jsonl"
    rows = path.read_text().splitlines()
    rows.insert(line - 1, bad)
    path.write_text("\n".join(rows) + "\n")  # a full (newline-ended) bad line is never silently dropped
    with pytest.raises(ValueError, match=f"examples.jsonl, line {line}: "):
        evaluate(llama, [task], ["pasta"], **kw)
    assert path.read_text().splitlines() == rows  # the file is left for the user to fix


def test_profile_from_another_model_is_refused(llama, tmp_path):
    from pasta_lens import HeadProfile, weights_hash

    task = JsonTask(bios=short_bios())
    kw = dict(n=1, batch_size=1, max_new_tokens=2, progress=False)
    shape = dict(n_layers=llama.cfg.n_layers, n_heads=llama.cfg.n_heads, heads=HEADS)
    other = HeadProfile(model_name="other-weights", weights_hash="sha256:" + "0" * 32, **shape)
    path = other.save(tmp_path / "other.json")
    for source in (other, str(path)):
        with pytest.raises(ValueError, match="other weights.*allow_transfer"):
            evaluate(llama, [task], ["pasta"], profile=source, **kw)
    res = evaluate(llama, [task], ["pasta"], profile=other, allow_transfer=True, **kw)
    assert res.summary["config"]["heads"]["pasta"] == [list(h) for h in ranked_heads(other)]
    same = HeadProfile(model_name="tiny", weights_hash=weights_hash(llama), **shape)
    evaluate(llama, [task], ["pasta"], profile=same, **kw)  # the right model passes
    deeper = HeadProfile(model_name="deeper", n_layers=llama.cfg.n_layers + 1, n_heads=llama.cfg.n_heads, heads=HEADS)
    with pytest.raises(ValueError, match="layers x"):  # the shape is checked even with allow_transfer
        evaluate(llama, [task], ["pasta"], profile=deeper, allow_transfer=True, **kw)


def test_evaluate_errors(llama):
    with pytest.raises(ValueError, match="needs a head profile"):
        evaluate(llama, ["json"], ["pasta"], n=1, progress=False)
    with pytest.raises(ValueError, match="not both"):
        evaluate(llama, ["json"], ["pasta"], n=1, heads=HEADS, profile="x", progress=False)
    with pytest.raises(ValueError, match="Unknown task"):
        evaluate(llama, ["jsn"], ["zero-shot"], n=1, progress=False)


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    """The tiny Llama saved like a Hub checkpoint, so that the CLI can load it by path."""
    from tests.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama")
    path = tmp_path_factory.mktemp("tiny_llama_cli")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def test_cli_evaluate_end_to_end(saved_llama, cf_task, tmp_path, capsys):
    """`pasta-lens evaluate` runs the harness with the parsed settings: same rows as the Python call."""
    from pasta_lens.cli import main
    from pasta_lens.models import load_model

    out = tmp_path / "run"
    assert main(["evaluate", "--model", saved_llama, "--tasks", "counterfact", "--data-dir", str(cf_task.data_dir),
                 "--heads", "1:0,2:*", "--baselines", "zero-shot,pasta", "--alphas", "0.1", "--ks", "2",
                 "--split", "test", "--n", "2", "--max-new-tokens", "3", "--batch-size", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    methods = ["zero-shot", "pasta", "pasta:alpha=0.1", "pasta:k=2"]
    assert sorted({r["method"] for r in rows}) == sorted(methods) and len(rows) == 4 * 2
    summary = json.loads((out / "summary.json").read_text())
    heads = [(1, 0), (2, 0), (2, 1), (2, 2), (2, 3)]  # "2:*" is every head of layer 2, in the order given
    assert summary["config"]["heads"]["pasta"] == [list(h) for h in heads]
    assert summary["config"]["heads"]["pasta:k=2"] == [list(h) for h in heads[:2]]
    assert (out / "table.md").read_text() in printed
    # the same evaluation through the Python API gives the same outputs and metrics row by row
    ref = evaluate(load_model(saved_llama), [cf_task], methods, "test", 2, heads=heads, batch_size=2,
                   max_new_tokens=3, progress=False)
    key = lambda r: (r["method"], r["uid"])  # noqa: E731
    assert [(key(r), r["outputs"], r["metrics"]) for r in sorted(rows, key=key)] == [
        (key(r), r["outputs"], r["metrics"]) for r in sorted(ref.rows, key=key)]
    # and the steering settings reached the model: the alpha ablation and the k ablation change the outputs
    by = {key(r): r["outputs"]["es"] for r in rows}
    uid = rows[0]["uid"]
    assert by[("pasta", uid)] != by[("zero-shot", uid)] != by[("pasta:alpha=0.1", uid)]
    assert by[("pasta:k=2", uid)] != by[("pasta", uid)]


def test_cli_method_specs_keep_their_comma_separated_options():
    """`--baselines` is a comma list whose specs may carry several comma-separated options of their own: a piece
    with `=` and no method name before it belongs to the spec before it (a spec that lost an option would run
    another configuration, or be refused as an unknown method)."""
    from pasta_lens.cli import split_method_specs
    from pasta_lens.evaluation import parse_methods

    text = "zero-shot, pasta:alpha=0.1,schedule=prompt,guide:delta=2,schedule=all,prism_delta:projections=p.st,gain=0.4"
    specs = split_method_specs(text)
    assert specs == ["zero-shot", "pasta:alpha=0.1,schedule=prompt", "guide:delta=2,schedule=all",
                     "prism_delta:projections=p.st,gain=0.4"]
    assert [m.name for m in parse_methods(specs[:3])] == specs[:3]
    assert split_method_specs("zero-shot,pasta") == ["zero-shot", "pasta"]
    with pytest.raises(ValueError, match="before any method"):
        split_method_specs("gain=0.4,pasta")


def _wilson_by_bisection(x: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson interval from its definition, the set of p with |x/n - p| <= z sqrt(p (1 - p) / n), found by
    bisecting each side of x/n (inside the set near x/n, outside it near 0 and 1)."""
    inside = lambda p: abs(x / n - p) <= z * math.sqrt(p * (1 - p) / n)  # noqa: E731

    def edge(inner: float, outer: float) -> float:
        for _ in range(200):
            mid = (inner + outer) / 2
            inner, outer = (mid, outer) if inside(mid) else (inner, mid)
        return inner

    low = 0.0 if x == 0 else edge(x / n, 0.0)
    high = 1.0 if x == n else edge(x / n, 1.0)
    return low, high


@pytest.mark.parametrize("x,n", [(0, 10), (1, 10), (49, 50), (25, 50), (50, 50), (37, 200)])
def test_wilson_interval_matches_its_definition(x, n):
    from pasta_lens.evaluation.report import wilson_interval

    low, high = wilson_interval(x, n)
    want_low, want_high = _wilson_by_bisection(x, n)
    assert low == pytest.approx(want_low, abs=1e-9) and high == pytest.approx(want_high, abs=1e-9)
    assert low <= x / n <= high


def test_summary_intervals_wilson_for_accuracies_and_se_for_fluency():
    from pasta_lens.evaluation import parse_method
    from pasta_lens.evaluation.report import markdown_table, summarize, wilson_interval
    from pasta_lens.tasks import get_task

    task = get_task("counterfact")
    method = parse_method("zero-shot")
    es = [1, 1, 0, 1, 0, 1, 1, 1]
    flu = [3.0, 4.0, 5.0, 3.5, 4.5, 4.0, 2.0, 6.0]
    rows = [{"task": "counterfact", "method": "zero-shot", "metrics": {"es": e, "ps": e, "fluency": f}}
            for e, f in zip(es, flu)]
    s = summarize(rows, [task], [method])["tasks"]["counterfact"]["zero-shot"]
    assert s["ci95_es"] == list(wilson_interval(6, 8))
    mean = sum(flu) / 8
    sd = math.sqrt(sum((v - mean) ** 2 for v in flu) / 7)
    assert s["ci95_fluency"] == pytest.approx([mean - 1.96 * sd / math.sqrt(8), mean + 1.96 * sd / math.sqrt(8)],
                                              rel=1e-4)
    table = markdown_table(summarize(rows, [task], [method]), [task], [method])
    low, high = wilson_interval(6, 8)
    assert f"[{100 * low:.1f}, {100 * high:.1f}]" in table.split("95% intervals")[1]


def test_average_of_one_accuracy_has_its_wilson_interval_inside_0_1():
    """BiasBios averages one accuracy: mean +- 1.96 SE would pass 100% at 199/200; Wilson stays inside [0, 1]."""
    from pasta_lens.evaluation import parse_method
    from pasta_lens.evaluation.report import summarize, wilson_interval
    from pasta_lens.tasks import get_task

    task, method = get_task("biasbios"), parse_method("zero-shot")
    rows = [{"task": "biasbios", "method": "zero-shot", "metrics": {"acc": int(i > 0)}} for i in range(200)]
    s = summarize(rows, [task], [method])
    assert s["average_ci95"]["zero-shot"] == list(wilson_interval(199, 200))
    assert s["average_ci95"]["zero-shot"][1] <= 1.0


def test_fraction_intervals_are_clipped_to_0_1_and_others_are_not():
    """CounterFact PS is a per-example fraction: near 100% its mean +- 1.96 SE would pass 1, which a mean of
    fractions cannot; the interval is clipped there (and in the ES/PS average), fluency's is not."""
    from pasta_lens.evaluation import parse_method
    from pasta_lens.evaluation.report import interval95, summarize
    from pasta_lens.tasks import get_task

    ps = [1.0] * 18 + [0.5, 0.9]
    mean, se = sum(ps) / 20, math.sqrt(sum((v - sum(ps) / 20) ** 2 for v in ps) / 19 / 20)
    assert mean + 1.96 * se > 1  # the unclipped interval leaves [0, 1]
    assert interval95(ps) == pytest.approx((mean - 1.96 * se, 1.0))
    assert interval95([v * 10 for v in ps])[1] == pytest.approx(10 * (mean + 1.96 * se))  # not a fraction
    task, method = get_task("counterfact"), parse_method("zero-shot")
    rows = [{"task": "counterfact", "method": "zero-shot", "metrics": {"es": 1, "ps": p, "fluency": 4.0 + p}}
            for p in ps]
    s = summarize(rows, [task], [method])
    assert s["tasks"]["counterfact"]["zero-shot"]["ci95_ps"][1] == 1.0
    assert s["average_ci95"]["zero-shot"][1] == 1.0
    assert s["tasks"]["counterfact"]["zero-shot"]["ci95_fluency"][1] > 4.0 + mean


@pytest.mark.parametrize("backend", ["bridge"], indirect=True)
def test_rows_record_the_engine_that_made_them(llama, tmp_path, monkeypatch):
    """The harness generates on the HF twin where generate() would, and says so in every row: spies on the two
    loops show which one ran. A user hook refuses the twin (it must fire): then the hooks loop runs, the rows say
    "hooks", and the outputs are the same. The engine is part of the configuration key, so a resumed run on the
    same folder with another engine recomputes its rows instead of mixing them in."""
    from pasta_lens.evaluation import scoring

    calls = {"hf": 0, "hooks": 0}

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(scoring, "hf_generate_tokens", spy("hf", scoring.hf_generate_tokens))
    monkeypatch.setattr(scoring, "generate_tokens", spy("hooks", scoring.generate_tokens))
    bios = short_bios()
    tasks = [get_task("json", bios=bios), get_task("biasbios", bios=bios)]
    kw = dict(n=2, heads=HEADS, batch_size=2, max_new_tokens=6, progress=False, out_dir=tmp_path)
    methods = ["zero-shot", "pasta", "pasta:schedule=prompt"]
    fast = evaluate(llama, tasks, methods, **kw)
    assert calls == {"hf": 3, "hooks": 0}  # one batch of 2 per JSON method; BiasBios generates nothing
    by_task = lambda res, t: [r for r in res.rows if r["task"] == t]  # noqa: E731
    assert {r["engine"] for r in by_task(fast, "json")} == {"hf"}
    assert {r["engine"] for r in by_task(fast, "biasbios")} == {"forward"}
    assert fast.summary["config"]["engine"] == "hf" and fast.summary["tasks"]["json"]["pasta"]["engine"] == "hf"
    seen = []
    with llama.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda act, hook: seen.append(1))]):
        hooked = evaluate(llama, tasks, methods, **kw)  # same folder: must not reuse the twin's rows
    assert seen and calls == {"hf": 3, "hooks": 3}
    assert {r["engine"] for r in by_task(hooked, "json")} == {"hooks"}
    assert hooked.summary["config"]["engine"] == "hooks" and "hook" in hooked.summary["config"]["engine_reason"]
    assert [r["outputs"] for r in fast.rows] == [r["outputs"] for r in hooked.rows]
    json_keys = lambda res: {r["config"] for r in by_task(res, "json")}  # noqa: E731
    assert json_keys(fast).isdisjoint(json_keys(hooked))  # the engine is part of the key
    assert {r["config"] for r in by_task(fast, "biasbios")} == {r["config"] for r in by_task(hooked, "biasbios")}
    # engine="hooks" asks for the hooks loop without a user hook; its rows are the ones just made (resumed)
    again = evaluate(llama, tasks, methods, engine="hooks", **kw)
    assert calls == {"hf": 3, "hooks": 3} and [r["config"] for r in again.rows] == [r["config"] for r in hooked.rows]
    rows = [json.loads(line) for line in (tmp_path / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3 + 2 * 3 + 2 * 3  # JSON under each engine + BiasBios once


def _reference_token_logprobs(model, rendered, candidates, alphas):
    """Per-token log-probs of each candidate after ``rendered``, steered by an independent reference written from
    PASTA's formula: on ``hook_pattern`` of head h, every prompt key outside the emphasised characters is weighted
    by alpha_h and each row renormalised (A' = A w / sum A w), every query row; the keys are found from the
    tokenizer's own character offsets, the candidates scored one by one (no shared prefixes)."""
    tok = model.tokenizer
    enc = tok(rendered.text, add_special_tokens=False, return_offsets_mapping=True)
    prepend = rendered.prepend_bos if rendered.prepend_bos is not None else model.cfg.default_prepend_bos
    bos = [tok.bos_token_id] if prepend else []
    prompt = bos + enc["input_ids"]
    inside = [a < b and any(a < end and start < b for start, end in rendered.char_spans)
              for a, b in enc["offset_mapping"]]
    outside = torch.tensor([True] * len(bos) + [not x for x in inside])  # BOS is a prompt key outside the span
    out = []
    for cand in candidates:
        ids = tok(cand, add_special_tokens=False)["input_ids"]
        tokens = torch.tensor([prompt + ids])
        hooks = []
        for layer in sorted({h[0] for h in alphas}):
            def hook(pattern, hook, layer=layer):
                pattern = pattern.clone()
                for (lay, head), a in alphas.items():
                    if lay == layer:
                        weights = torch.ones(pattern.shape[-1])
                        weights[:len(prompt)][outside] = a
                        scaled = pattern[0, head] * weights
                        pattern[0, head] = scaled / scaled.sum(-1, keepdim=True)
                return pattern
            hooks.append((f"blocks.{layer}.attn.hook_pattern", hook))
        with torch.inference_mode():
            logp = torch.log_softmax(model.run_with_hooks(tokens, fwd_hooks=hooks)[0].float(), dim=-1)
        out.append([float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(ids)])
    return out


@pytest.mark.parametrize("backend", ["bridge"], indirect=True)
def test_each_method_steers_at_the_alphas_of_the_precedence_rule(llama, cf_task):
    """explicit (method option > evaluation alpha) > the profile's per-head alphas > the profile's alpha > 0.01;
    all-heads and random never take the profile's alphas; pasta:k=N keeps the N best heads' own alphas. Checked
    on the rows' per-token log-probs against an independent additive reference (not the harness's scoring)."""
    from pasta_lens import HeadProfile, weights_hash

    shape = dict(model_name="tiny", weights_hash=weights_hash(llama), n_layers=llama.cfg.n_layers,
                 n_heads=llama.cfg.n_heads, heads=tuple(sorted(HEADS)))
    learned = HeadProfile(**shape, alpha=0.3, head_alphas={(1, 0): 0.05, (2, 1): 0.2, (2, 3): 0.5})
    scalar = HeadProfile(**shape, alpha=0.05)
    ex = cf_task.examples("test", 1)[0]
    q = cf_task.queries(ex)[0]
    rendered = cf_task.render(llama, q.markup)
    kw = dict(n=1, max_new_tokens=1, progress=False)
    runs = {"learned": evaluate(llama, [cf_task], ["pasta", "pasta:k=1", "random", "all-heads"], profile=learned,
                                **kw),
            "scalar": evaluate(llama, [cf_task], ["pasta", "random"], profile=scalar, **kw),
            "explicit": evaluate(llama, [cf_task], ["pasta", "pasta:alpha=0.5"], profile=learned, alpha=0.2, **kw)}
    every = [(layer, h) for layer in range(3) for h in range(4)]
    random_heads = [tuple(h) for h in runs["learned"].summary["config"]["heads"]["random"]]
    want = {("learned", "pasta"): dict(learned.head_alphas), ("learned", "pasta:k=1"): {(1, 0): 0.05},
            ("learned", "random"): {h: 0.01 for h in random_heads}, ("learned", "all-heads"): {h: 0.01 for h in every},
            ("scalar", "pasta"): {h: 0.05 for h in HEADS}, ("scalar", "random"): {h: 0.01 for h in random_heads},
            ("explicit", "pasta"): {h: 0.2 for h in HEADS}, ("explicit", "pasta:alpha=0.5"): {h: 0.5 for h in HEADS}}
    plain = _reference_token_logprobs(llama, rendered, q.candidates, {})
    for (run, method), alphas in want.items():
        row = next(r for r in runs[run].rows if r["method"] == method)
        ref = _reference_token_logprobs(llama, rendered, q.candidates, alphas)
        got = row["outputs"]["es.tokens"]
        assert [len(x) for x in got] == [len(x) for x in ref]
        assert max(abs(a - b) for g, r in zip(got, ref) for a, b in zip(g, r)) < 1e-4, (run, method)
        assert max(abs(a - b) for g, r in zip(got, plain) for a, b in zip(g, r)) > 1e-3, (run, method)  # steered
    plans = runs["learned"].summary["config"]["plans"]
    assert plans["pasta"].startswith("heads: 3 (profile 'tiny')   alpha: per head, 0.05-0.5")
    assert plans["pasta:k=1"].startswith("heads: 1 (profile 'tiny', top 1)   alpha: 0.05")
    assert "alpha: 0.01" in plans["random"] and "alpha: 0.01" in plans["all-heads"]
    assert "alpha: 0.05" in runs["scalar"].summary["config"]["plans"]["pasta"]
