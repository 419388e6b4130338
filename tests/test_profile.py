"""HeadProfile: round trip, atomic save, wrong-model refusal, official JSON import (the registry: test_registry.py)."""

import json
from pathlib import Path

import pytest
import torch

from pasta_lens import HeadProfile, load_profile, steer
from pasta_lens.fingerprint import weights_hash
from pasta_lens.head_profile import SCHEMA_VERSION
from pasta_lens.spans import emphasize
from tests.tiny import tiny_hf_model, tiny_model

REPO = Path(__file__).resolve().parents[1]


def _profile(model, **kw):
    scores = {"counterfact": torch.arange(model.cfg.n_layers * model.cfg.n_heads, dtype=torch.float32)
              .reshape(model.cfg.n_layers, model.cfg.n_heads) / 7}
    args = dict(model_name="tiny-llama", n_layers=model.cfg.n_layers, n_heads=model.cfg.n_heads,
                heads=[(2, 1), (0, 3), (2, 1)], weights_hash=weights_hash(model), tasks=("counterfact",),
                method="hybrid", alpha=0.01, k=4, strategy="intersection", n_examples={"counterfact": 3}, seed=0,
                command="pasta-lens profile ...", scores=scores, provenance={"wall_time_s": 1.5})
    args.update(kw)
    return HeadProfile(**args)


def test_round_trip_is_lossless_and_atomic(llama, tmp_path):
    profile = _profile(llama)
    assert profile.heads == ((0, 3), (2, 1))  # normalised: sorted, unique
    path = profile.save(tmp_path / "sub" / "p.json")
    assert [p.name for p in path.parent.iterdir()] == ["p.json"]  # no temporary file left behind
    loaded = HeadProfile.load(path)
    assert loaded == profile
    assert load_profile(str(path)) == profile
    torch.testing.assert_close(loaded.score_table("counterfact"), torch.tensor(profile.scores["counterfact"]))
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["heads"] == [[0, 3], [2, 1]]


def test_weights_hash_is_stable_across_loads_and_tells_models_apart():
    from transformer_lens.model_bridge import TransformerBridge

    a = weights_hash(tiny_model("llama"))
    hf, tok = tiny_hf_model("llama", seed=0)
    again = TransformerBridge.boot_transformers("tiny-llama-again", hf_model=hf, tokenizer=tok)
    assert weights_hash(again) == a
    assert weights_hash(tiny_model("llama", seed=1)) != a
    assert a.startswith("sha256:")


def test_wrong_model_is_refused_and_transfer_overrides(llama, gpt2):
    profile = _profile(llama)
    profile.validate_for(llama)
    with pytest.raises(ValueError, match="3 layers x 4 heads.*2 x 4"):
        profile.validate_for(gpt2)
    with pytest.raises(ValueError, match="3 layers x 4 heads"):
        profile.validate_for(gpt2, allow_transfer=True)  # the shape is never waived
    other = tiny_model("llama", seed=1)
    with pytest.raises(ValueError, match="allow_transfer=True"):
        profile.validate_for(other)
    profile.validate_for(other, allow_transfer=True)
    em = emphasize(other, "Maria is a nurse. *Answer in JSON.*")
    with pytest.raises(ValueError, match="other weights"):
        with steer(other, profile, em):
            pass
    with steer(other, profile, em, allow_transfer=True):
        other(em.tokens)
    for hp in other.hook_points():
        assert not hp._forward_hooks


def test_invalid_profiles_are_clear_errors(llama):
    with pytest.raises(ValueError, match="out of range"):
        _profile(llama, heads=[(3, 0)])
    with pytest.raises(ValueError, match="empty"):
        _profile(llama, heads=[])
    with pytest.raises(ValueError, match="3 x 4 table"):
        _profile(llama, scores={"counterfact": [[1.0] * 4] * 2})
    with pytest.raises(ValueError, match="missing from tasks"):
        _profile(llama, tasks=())
    with pytest.raises(ValueError, match="strategy"):
        _profile(llama, strategy="majority")
    with pytest.raises(ValueError, match="schema"):
        HeadProfile.from_dict(dict(_profile(llama).to_dict(), schema_version=99))
    with pytest.raises(ValueError, match="Unknown profile fields"):
        HeadProfile.from_dict(dict(_profile(llama).to_dict(), hedas=[]))


def test_official_pasta_json_import(tmp_path):
    path = tmp_path / "top3.json"
    path.write_text(json.dumps({"16": [16, 21], "12": [23, 26, 0], "10": [23, 7, 22]}))
    profile = HeadProfile.from_pasta_json(path, model_name="huggyllama/llama-7b", n_layers=32, n_heads=32, k=3,
                                          provenance={"license": "MIT"})
    assert profile.heads == ((10, 7), (10, 22), (10, 23), (12, 0), (12, 23), (12, 26), (16, 16), (16, 21))
    assert profile.weights_hash is None and profile.method == "pasta-official"
    assert profile.provenance == {"source_file": "top3.json", "license": "MIT"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"16": 3}))
    with pytest.raises(ValueError, match="PASTA head config"):
        HeadProfile.from_pasta_json(bad, model_name="m", n_layers=32, n_heads=32)
    with pytest.raises(ValueError, match="out of range"):
        HeadProfile.from_pasta_json(path, model_name="m", n_layers=12, n_heads=32)


@pytest.mark.slow
def test_shipped_smollm2_profile_is_the_default_head_set(smollm2):
    from pasta_lens import generate
    from pasta_lens.registry import default_heads

    profile = load_profile("smollm2-135m-instruct")
    profile.validate_for(smollm2)  # same shape and weights hash as the offline model
    heads, note = default_heads(smollm2)
    assert heads == profile.heads and "shipped profile 'smollm2-135m-instruct'" in note
    assert set(profile.tasks) == {"json", "pronoun", "biasbios", "counterfact"}
    # made by `pasta-lens profile --method learned` (its command, which bench/profile_budget.py reruns), on train data
    from pasta_lens.cli import build_parser

    args = build_parser().parse_args(profile.command.split()[1:])
    assert (args.method, args.tasks, args.protect, args.protect_gen) == ("learned", "json", "pronoun", 16)
    assert args.protect_base == "counterfact" and profile.provenance["learned"]["protect"]["reference"] == {
        "counterfact": "base", "pronoun": "unsteered"}  # CounterFact kept as the base (-metric) has it
    assert profile.provenance["split"] == "train" and len(profile.scores) == 4
    # learned JSON strengths on top of the metric-selected intersection, trained and used with schedule prompt
    assert profile.method.startswith("learned") and args.base_profile == "smollm2-135m-instruct-metric"
    base = load_profile(profile.provenance["base_profile"]["profile"])
    assert base.provenance["selected_by"] == "metric" and base.provenance["fluency_floor_met"] is True
    assert all(profile.head_alphas[h] == base.alpha for h in base.heads)  # the base kept at its strength
    assert len(profile.heads) > len(base.heads)
    assert profile.provenance["schedule"] == "prompt" and "schedule 'prompt'" in note
    text = "Maria is a nurse who lives in Paris. *Answer in JSON.*"
    by_default = generate(smollm2, text, max_new_tokens=12)
    assert by_default == generate(smollm2, text, profile, max_new_tokens=12, schedule="prompt")
    assert by_default != generate(smollm2, text, profile, max_new_tokens=12, schedule="all")
    # the profile its base's scores came from, shipped beside it under its own name
    source = load_profile(base.provenance["scores_from"]["profile"])
    assert source.model_name == profile.model_name and set(base.heads) <= set(source.heads)


def test_pyproject_installs_every_subpackage_and_the_registry():
    """The package-dir mapping of profiles/ needs an explicit package list: it must name every sub-package."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser as tomli, which pytest itself needs there
        import tomli as tomllib

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"pasta_lens.profiles": "profiles"}
    packages = {".".join(p.parent.relative_to(root).parts) for p in (root / "pasta_lens").rglob("__init__.py")}
    expected = packages | {"pasta_lens.profiles"}
    assert set(config["packages"]) == expected, "add new sub-packages to [tool.setuptools] packages"
    assert "*.json" in config["package-data"]["pasta_lens.profiles"]


@pytest.mark.parametrize("edit,match", [
    (lambda d: dict(d, heads=None), r"'heads' must be a list of \[layer, head\] pairs; got null"),
    (lambda d: dict(d, heads=[1, 2]), r"'heads' must be a list of \[layer, head\] pairs"),
    (lambda d: [d], r"JSON object .* got a list at the top level"),
    (lambda d: {k: v for k, v in d.items() if k != "model_name"}, r"missing the required field 'model_name'"),
    (lambda d: {k: v for k, v in d.items() if k != "n_heads"}, r"missing the required field 'n_heads'"),
    (lambda d: dict(d, tasks=None), r"'tasks' must be a list of task names; got null"),
    (lambda d: dict(d, scores=[]), r"'scores' must be an object"),
    (lambda d: dict(d, n_layers="3"), r"n_layers must be a positive integer"),
    (lambda d: dict(d, alpha=1e-40), r"below the floor"),
    (lambda d: {k: v for k, v in d.items() if k != "schema_version"}, r"no 'schema_version'"),
    (lambda d: {"16": [16, 21], "12": [23, 26, 0]}, r"official PASTA head config.*HeadProfile\.from_pasta_json"),
])
def test_malformed_profile_files_name_the_file_and_the_field(llama, tmp_path, edit, match):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(edit(_profile(llama).to_dict())))
    with pytest.raises(ValueError, match=match) as err:
        HeadProfile.load(path)
    assert str(path) in str(err.value) and "upgrade" not in str(err.value)
    with pytest.raises(ValueError, match=match):
        load_profile(str(path))


def test_schema_versions_say_which_way_to_go(llama):
    d = _profile(llama).to_dict()
    with pytest.raises(ValueError, match="upgrade pasta-lens"):
        HeadProfile.from_dict(dict(d, schema_version=99))
    with pytest.raises(ValueError, match="re-profile") as err:
        HeadProfile.from_dict(dict(d, schema_version=0))
    assert "upgrade" not in str(err.value)  # an older file is not fixed by a newer pasta-lens


def test_union_of_profiles_steers_every_head_at_its_strongest_alpha(llama, tmp_path):
    """The union steers each head of each profile; a shared head at the smaller alpha; a profile without per-head
    alphas at its alpha. Steering with it equals pasta_hooks with those per-head alphas; mismatched schedules,
    shapes or weights are refused."""
    from pasta_lens import pasta_hooks, union_profiles
    from pasta_lens.fingerprint import ModelFingerprint

    fp = ModelFingerprint.of(llama)
    base = _profile(llama, heads=[(0, 3), (2, 1)], alpha=0.01, fingerprint=fp, provenance={"schedule": "prompt"})
    learned = _profile(llama, heads=[(1, 0), (2, 1)], head_alphas={(1, 0): 0.2, (2, 1): 0.05}, tasks=("json",),
                       scores={}, n_examples={"json": 2}, method="learned", fingerprint=fp,
                       provenance={"schedule": "prompt"})
    both = union_profiles([base, learned], names=["base", "json"], command="x")
    assert both.head_alphas == {(0, 3): 0.01, (2, 1): 0.01, (1, 0): 0.2}
    assert both.tasks == ("counterfact", "json") and set(both.scores) == {"counterfact"}
    assert both.provenance["schedule"] == "prompt" and [u["profile"] for u in both.provenance["union_of"]] == \
        ["base", "json"]
    assert both.method.startswith("union of: base: hybrid | json: learned")
    again = HeadProfile.load(both.save(tmp_path / "u.json"))
    assert again.head_alphas == both.head_alphas and again.provenance == both.provenance
    em = emphasize(llama, "Maria is a nurse. *Answer in JSON.* Thanks.")
    with torch.inference_mode():
        with steer(llama, again, em):
            got = llama(em.tokens)
        ref = llama.run_with_hooks(em.tokens, fwd_hooks=pasta_hooks(list(both.head_alphas), em,
                                                                   alpha=both.head_alphas, schedule="prompt"))
    assert torch.equal(got, ref)
    # uniform alphas stay a plain profile
    plain = union_profiles([base, _profile(llama, heads=[(1, 1)], provenance={"schedule": "prompt"})])
    assert plain.head_alphas == {} and plain.alpha == 0.01 and set(plain.heads) == {(0, 3), (2, 1), (1, 1)}
    with pytest.raises(ValueError, match="different schedules"):
        union_profiles([base, _profile(llama, heads=[(1, 1)])])
    with pytest.raises(ValueError, match="at least two"):
        union_profiles([base])
    other = HeadProfile(model_name="x", n_layers=llama.cfg.n_layers + 1, n_heads=llama.cfg.n_heads, heads=[(0, 0)],
                        provenance={"schedule": "prompt"})
    with pytest.raises(ValueError, match="one model"):
        union_profiles([base, other])
    moved = _profile(llama, heads=[(1, 1)], provenance={"schedule": "prompt"}, fingerprint=ModelFingerprint(
        fp.probe, tuple(x + 1.0 for x in fp.logprobs), fp.dtype))
    with pytest.raises(ValueError, match="different weights"):
        union_profiles([base, moved])


def test_cli_profile_union(llama, tmp_path, capsys):
    from pasta_lens.cli import main

    a = _profile(llama, heads=[(0, 3)], provenance={"schedule": "prompt"}).save(tmp_path / "a.json")
    b = _profile(llama, heads=[(1, 0)], alpha=0.1, provenance={"schedule": "prompt"}).save(tmp_path / "b.json")
    out = tmp_path / "ab.json"
    assert main(["profile", "union", str(a), str(b), "--out", str(out)]) == 0
    assert "2 heads (1 + 1" in capsys.readouterr().out
    ab = HeadProfile.load(out)
    assert ab.head_alphas == {(0, 3): 0.01, (1, 0): 0.1} and ab.command.startswith("pasta-lens profile union")
    c = _profile(llama, heads=[(1, 1)]).save(tmp_path / "c.json")  # schedule all
    assert main(["profile", "union", str(a), str(c), "--out", str(tmp_path / "ac.json")]) == 2
    assert "different schedules" in capsys.readouterr().err


def test_score_table_is_what_a_profile_holds_from_a_tensor_or_rows():
    from pasta_lens.head_profile import score_table

    table = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.25, -0.125]])
    expected = ((0.5, -1.0, 2.0), (0.0, 3.25, -0.125))
    assert score_table(table) == expected and score_table(table.tolist()) == expected
    assert all(type(x) is float for row in score_table([[1, 2, 3]]) for x in row)  # ints become floats
    profile = HeadProfile(model_name="m", n_layers=2, n_heads=3, heads=[(0, 0)], tasks=("json",),
                          scores={"json": table})
    assert profile.scores["json"] == expected  # a tensor given to HeadProfile is held as the same tuples
