"""The registry: an explicit index of each model's default (never a naming rule), found by identity alone.

Tiny registries are written to a temporary folder (an ``index.json`` and profile files) and read with
``Registry.read``; the shipped one is checked against the files in ``profiles/``.
"""

import json
import re
import warnings
from pathlib import Path

import pytest
import torch

from pasta_lens import HeadProfile, emphasize, generate, list_profiles, load_profile, steer
from pasta_lens.fingerprint import ModelFingerprint, weights_hash
from pasta_lens.generation import decode_new, generate_tokens
from pasta_lens.registry import (PROFILE_COMMAND, Registry, default_heads, default_profile, find_profile,
                                 interim_heads, shipped_registry)

PROFILES = Path(__file__).resolve().parents[1] / "profiles"
TEXT = "Maria is a nurse who lives in Paris. *Answer in JSON.* Thanks."
RESID = "blocks.1.hook_resid_post"


def tiny_registry(model, root, extra=None, index_extra=False):
    """A profiles folder for ``model``: default ``tiny-default`` (fingerprinted on ``model``), plus ``extra``
    ``{name: profile}`` files, indexed as variants when ``index_extra``."""
    shape = dict(model_name="tiny-llama", n_layers=model.cfg.n_layers, n_heads=model.cfg.n_heads)
    default = HeadProfile(heads=[(2, 1), (1, 3)], fingerprint=ModelFingerprint.of(model),
                          date="2024-01-01T00:00:00+00:00", provenance={"schedule": "prompt"}, **shape)
    default.save(root / "tiny-default.json")
    profiles = {"tiny-default": "the tiny model's default"}
    for name, profile in (extra or {}).items():
        profile.save(root / f"{name}.json")
        if index_extra:
            profiles[name] = f"a variant named {name}"
    index = {"index_version": 1, "models": {"tiny-llama": {"default": "tiny-default", "profiles": profiles}}}
    (root / "index.json").write_text(json.dumps(index))
    return Registry.read(root)


# ----------------------------------------------------------------------------------------- the shipped index
def test_the_shipped_index_and_the_files_agree():
    """Every indexed name has its file, every profile file in profiles/ is indexed, each under the model it was
    made on, and every default can prove which weights it belongs to (else find_profile could never offer it)."""
    registry = shipped_registry()
    files = {p.stem for p in PROFILES.glob("*.json") if p.name != "index.json"}
    indexed = set(registry.names())
    assert indexed - files == set(), f"indexed without a file in profiles/: {sorted(indexed - files)}"
    assert files - indexed == set(), (f"{sorted(files - indexed)} are in profiles/ (so in every user's wheel) but "
                                      "not in profiles/index.json: index them or move them out of the package")
    assert list_profiles() == tuple(sorted(files))
    for entry in registry.models:
        shapes = set()
        for name in entry.profiles:
            profile = load_profile(name)
            assert profile.model_name == entry.model, name
            shapes.add((profile.n_layers, profile.n_heads))
        assert len(shapes) == 1, f"{entry.model}: profiles of different shapes {shapes}"
        if entry.default is not None:
            default = load_profile(entry.default)
            assert default.fingerprint is not None or default.weights_hash is not None, entry.default


def test_the_shipped_index_names_the_offline_models_defaults_and_the_paper_head_sets():
    by_model = {entry.model: entry for entry in shipped_registry().models}
    smollm2 = by_model["smollm2-135m-instruct"]
    assert smollm2.default == "smollm2-135m-instruct"
    assert set(smollm2.profiles) == {"smollm2-135m-instruct", "smollm2-135m-instruct-metric",
                                     "smollm2-135m-instruct-attribution"}
    gemma = by_model["gemma-3-270m"]
    assert gemma.default == "gemma-3-270m" and set(gemma.profiles) == {"gemma-3-270m", "gemma-3-270m-quick"}
    quick = load_profile("gemma-3-270m-quick")
    assert quick.provenance["preset"]["name"] == "quick" and quick.command.startswith("pasta-lens profile --preset quick")
    for model, prefix in (("huggyllama/llama-7b", "llama-7b-pasta-top"), ("EleutherAI/gpt-j-6b", "gpt-j-6b-pasta-top")):
        entry = by_model[model]
        assert entry.default is None  # no fingerprint: they can never be found for a model, only loaded by name
        assert entry.profiles and all(name.startswith(prefix) for name in entry.profiles)
    llama7b = load_profile("llama-7b-pasta-top300")
    assert (llama7b.n_layers, llama7b.n_heads, llama7b.k, llama7b.strategy) == (32, 32, 300, "intersection")
    assert len(llama7b.heads) == 25 and (10, 23) in llama7b.heads
    assert llama7b.provenance["repository"].endswith("QingruZhang/PASTA") and llama7b.provenance["license"] == "MIT"
    gptj = load_profile("gpt-j-6b-pasta-top75")
    assert gptj.heads == ((4, 0), (12, 2), (26, 11)) and (gptj.n_layers, gptj.n_heads) == (28, 16)
    with pytest.raises(ValueError, match="No shipped profile named 'nope'.*llama-7b"):
        load_profile("nope")
    with pytest.raises(FileNotFoundError):
        load_profile("missing/profile.json")


# ------------------------------------------------------------------------------------- defaults are explicit
def test_adding_a_matching_variant_changes_no_default(llama, tmp_path):
    """A variant made on the same weights, named so that it sorts first and is shorter than the default, changes
    nothing: neither as a stray file in the folder nor indexed as one of the model's profiles."""
    registry = tiny_registry(llama, tmp_path)
    assert find_profile(llama, registry)[0] == "tiny-default"
    spec, note = default_profile(llama, registry)
    variant = HeadProfile(model_name="tiny-llama", n_layers=llama.cfg.n_layers, n_heads=llama.cfg.n_heads,
                          heads=[(0, 0)], fingerprint=ModelFingerprint.of(llama), weights_hash=weights_hash(llama))
    for indexed in (False, True):
        registry = tiny_registry(llama, tmp_path, {"tiny": variant}, index_extra=indexed)
        assert ("tiny" in registry.names()) is indexed
        assert find_profile(llama, registry)[0] == "tiny-default"
        assert default_profile(llama, registry) == (spec, note)
        assert default_heads(llama, registry)[0] == ((1, 3), (2, 1))
    assert registry.load("tiny").heads == ((0, 0),)  # loadable by name once indexed, never the default


def test_a_model_with_other_weights_finds_no_default(llama, tmp_path):
    from tests.tiny import tiny_model

    registry = tiny_registry(llama, tmp_path)
    assert find_profile(tiny_model("llama", seed=1), registry) is None
    assert find_profile(llama) is None  # nothing shipped for a tiny random model (the imports have no identity)


@pytest.mark.parametrize("edit,match", [
    (lambda d: dict(d, index_version=2), r"index_version 2.*upgrade pasta-lens"),
    (lambda d: {"models": d["models"]}, r"exactly 'index_version' and 'models'"),
    (lambda d: {**d, "models": {"tiny-llama": {"default": "nope", "profiles": {"tiny-default": "x"}}}},
     r"default 'nope' is not among its profiles"),
    (lambda d: {**d, "models": {"tiny-llama": {"default": None, "profiles": {"tiny-default": "two\nlines"}}}},
     r"one-line description"),
    (lambda d: {**d, "models": {"tiny-llama": {"default": None, "profiles": {"tiny-default.json": "x"}}}},
     r"not a profile name"),
    (lambda d: {**d, "models": {"tiny-llama": {"default": None, "profiles": {"tiny-default": "x"}},
                                "other": {"default": None, "profiles": {"tiny-default": "y"}}}},
     r"indexed under both 'tiny-llama' and 'other'"),
    (lambda d: {**d, "models": {"tiny-llama": {"default": None}}}, r"exactly 'default'.*and 'profiles'"),
])
def test_a_broken_index_is_a_clear_error(llama, tmp_path, edit, match):
    tiny_registry(llama, tmp_path)
    index = tmp_path / "index.json"
    index.write_text(json.dumps(edit(json.loads(index.read_text()))))
    with pytest.raises(ValueError, match=match) as err:
        Registry.read(tmp_path)
    assert str(index) in str(err.value)


def test_an_indexed_name_without_its_file_is_a_clear_error(llama, tmp_path):
    registry = tiny_registry(llama, tmp_path)
    (tmp_path / "tiny-default.json").unlink()
    with pytest.raises(ValueError, match="lists 'tiny-default' but .* has no tiny-default.json"):
        find_profile(llama, registry)
    with pytest.raises(ValueError, match="No index.json"):
        Registry.read(tmp_path / "elsewhere")


# ------------------------------------------------------------------------------- identity without side effects
def test_user_hooks_never_change_which_default_is_found(llama, tmp_path):
    """Inside ``with model.hooks(...)`` (an activation edit) and with a PyTorch hook on a module, the default
    is still the model's own profile, not the interim set; both hooks are still on, and fire, afterwards."""
    registry = tiny_registry(llama, tmp_path)
    tokens = emphasize(llama, TEXT).tokens
    with torch.inference_mode():
        plain = llama(tokens)
    handle = llama.ln_final.register_forward_hook(lambda module, args, out: out * 2.0)
    try:
        with llama.hooks(fwd_hooks=[(RESID, lambda x, hook: x * 1.5)]):
            with torch.inference_mode():
                edited = llama(tokens)
            assert not torch.allclose(edited, plain)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # the interim set would warn
                spec, note = default_profile(llama, registry)
            assert spec == registry.load("tiny-default") and "shipped profile 'tiny-default'" in note
            spec.validate_for(llama)
            with torch.inference_mode():
                assert torch.equal(llama(tokens), edited)  # the user's hooks are back on and fire
    finally:
        handle.remove()


def test_the_interim_set_is_announced_with_the_command_that_makes_a_profile(llama, tmp_path):
    command = "pasta-lens profile --model tiny-llama --preset quick --out tiny-llama.json"  # the model's own name
    with pytest.warns(UserWarning, match=re.escape(command)) as caught:
        spec, note = default_profile(llama)  # nothing shipped for a tiny random model
    assert spec.heads == interim_heads(llama) and "interim" in note and "--preset quick" in PROFILE_COMMAND
    assert (spec.alpha, spec.provenance["schedule"], spec.fingerprint) == (0.1, "prompt", None)  # see no-profile.md
    message = str(caught[0].message)
    assert message.startswith("There is no profile for this model")
    assert "interim head set" in message and message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert "load_profile('tiny-llama.json')" in message
    with pytest.warns(UserWarning, match="interim head set"):
        text = generate(llama, TEXT, max_new_tokens=4)
    em = emphasize(llama, TEXT)
    with steer(llama, interim_heads(llama), em, alpha=0.1, schedule="prompt"):
        assert text == decode_new(llama, generate_tokens(llama, em, 4))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default_profile(llama, tiny_registry(llama, tmp_path))  # a shipped default: no warning


def test_the_command_names_the_offline_model_as_load_model_takes_it():
    from types import SimpleNamespace

    from pasta_lens.registry import model_name, profile_command

    gemma = SimpleNamespace(cfg=SimpleNamespace(model_name="google/gemma-3-270m"))
    assert model_name(gemma) == "gemma-3-270m"
    assert model_name(SimpleNamespace(cfg=SimpleNamespace(model_name="org/some-model"))) == "org/some-model"
    assert profile_command("org/some-model") == (
        "pasta-lens profile --model org/some-model --preset quick --out some-model.json")
    assert model_name(SimpleNamespace()) == "NAME"


def test_cli_steer_says_which_head_set_it_used(tmp_path, capsys):
    from pasta_lens.cli import main
    from tests.tiny import tiny_hf_model

    hf, tok = tiny_hf_model("llama")
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    command = f"pasta-lens profile --model {tmp_path} --preset quick --out {tmp_path.name}.json"
    with pytest.warns(UserWarning, match=re.escape(command)):  # the name the user typed, to paste back
        assert main(["steer", "Maria is a nurse. *Answer in JSON.*", "--model", str(tmp_path),
                     "--max-new-tokens", "2"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "heads: 4 (interim head set" in line


@pytest.mark.slow
def test_smollm2_default_is_found_inside_user_hooks(smollm2):
    """On the real model: an activation edit on blocks.3 does not hide the shipped default."""
    with smollm2.hooks(fwd_hooks=[("blocks.3.hook_resid_post", lambda x, hook: x * 1.5)]):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            spec, note = default_profile(smollm2)
    assert spec == load_profile("smollm2-135m-instruct") and "shipped profile 'smollm2-135m-instruct'" in note
