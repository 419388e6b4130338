"""Model identity that survives dtype, backend and TransformerLens weight processing (pasta_lens.fingerprint).

A profile made on the bridge must be accepted by the HookedTransformer of the same weights (processed or not, fp32
or bf16) and refused by other weights. Tiny models here; SmolLM2 in the slow tests at the end.
"""

import json

import pytest
import torch

from pasta_lens import HeadProfile, emphasize, generate, load_profile, steer
from pasta_lens.backends import bridge_class, hooked_from_hf
from pasta_lens.fingerprint import FULL_PRECISION_ATOL, ModelFingerprint, model_dtype, probe_tokens, tolerance
from pasta_lens.fingerprint import weights_hash
from pasta_lens.head_profile import SCHEMA_VERSION
from pasta_lens.registry import find_profile
from tests.conftest import require_backend
from tests.tiny import tiny_hf_model, tiny_model


def _bf16_bridge(arch):
    hf, tok = tiny_hf_model(arch)
    return bridge_class().boot_transformers(f"tiny-{arch}-bf16", hf_model=hf.to(torch.bfloat16), tokenizer=tok,
                                            dtype=torch.bfloat16).eval()


def _same_weights(arch):
    """Every loading of the seed-0 weights that the installed TransformerLens offers."""
    models = {"bridge fp32": tiny_model(arch), "bridge bf16": _bf16_bridge(arch)}
    try:
        require_backend("hooked")
    except pytest.skip.Exception:
        return models
    for processing in (False, True):
        models[f"hooked fp32 processing={processing}"] = tiny_model(arch, backend="hooked", processing=processing)
        hf, tok = tiny_hf_model(arch)
        models[f"hooked bf16 processing={processing}"] = hooked_from_hf(hf, tok, processing=processing,
                                                                        dtype=torch.bfloat16)
    return models


def _profile(model, fingerprint=True):
    return HeadProfile(model_name="tiny", n_layers=model.cfg.n_layers, n_heads=model.cfg.n_heads, heads=[(1, 0)],
                       weights_hash=weights_hash(model),
                       fingerprint=ModelFingerprint.of(model) if fingerprint else None)


def test_probe_is_fixed_and_fits_the_vocabulary():
    assert probe_tokens(400) == probe_tokens(400)
    assert len(probe_tokens(400)) == 32 and max(probe_tokens(400)) < 400
    assert probe_tokens(400) != probe_tokens(401)
    with pytest.raises(ValueError, match="d_vocab"):
        probe_tokens(1)


def test_log_probs_are_the_models_own(llama):
    """Ground truth another way: a full forward pass and an explicit gather."""
    fp = ModelFingerprint.of(llama)
    tokens = torch.tensor([fp.probe])
    with torch.inference_mode():
        logp = llama(tokens)[0].log_softmax(-1)
    expected = [float(logp[t, fp.probe[t + 1]]) for t in range(len(fp.probe) - 1)]
    assert fp.logprobs == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_same_weights_match_on_every_backend_dtype_and_processing(arch):
    fp = ModelFingerprint.of(tiny_model(arch))
    for name, model in _same_weights(arch).items():
        assert fp.matches(model), name
        if model_dtype(model) == "float32":
            assert fp.distance(model) < FULL_PRECISION_ATOL / 100, name
        _profile(tiny_model(arch)).validate_for(model)  # accepted
    for seed in (1, 2):
        other = tiny_model(arch, seed)
        assert fp.distance(other) > 10 * FULL_PRECISION_ATOL and not fp.matches(other)


def test_tolerance_is_tight_in_full_precision_and_loose_in_reduced():
    assert tolerance("float32", "float32") == tolerance("float64", "float32") == FULL_PRECISION_ATOL
    assert tolerance("float32", "bfloat16") == tolerance("float16", "float16") > 10 * FULL_PRECISION_ATOL
    assert ModelFingerprint.of(_bf16_bridge("llama")).dtype == "bfloat16"


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_other_weights_are_refused_on_every_backend(arch, backend):
    profile = _profile(tiny_model(arch))  # made on the bridge
    other = tiny_model(arch, seed=1, backend=backend)
    with pytest.raises(ValueError, match="other weights.*probe log-probs differ"):
        profile.validate_for(other)
    profile.validate_for(other, allow_transfer=True)
    em = emphasize(other, "Maria is a nurse. *Answer in JSON.*")
    with pytest.raises(ValueError, match="allow_transfer=True"):
        with steer(other, profile, em):
            pass


def test_weights_hash_alone_would_refuse_the_bf16_model():
    """The bug this fixes: a schema-1 profile (hash only) refuses the same weights in bf16."""
    llama = tiny_model("llama")
    assert weights_hash(_bf16_bridge("llama")) != weights_hash(llama)
    with pytest.raises(ValueError, match="predates fingerprints"):
        _profile(llama, fingerprint=False).validate_for(_bf16_bridge("llama"))
    _profile(llama).validate_for(_bf16_bridge("llama"))


def test_schema_1_profiles_still_load_and_check_the_hash(tmp_path):
    llama = tiny_model("llama")
    old = _profile(llama, fingerprint=False).to_dict()
    old.pop("fingerprint")
    old["schema_version"] = 1
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    loaded = load_profile(str(path))
    assert loaded.fingerprint is None and loaded.schema_version == SCHEMA_VERSION
    loaded.validate_for(llama)
    with pytest.raises(ValueError, match="weights hash"):
        loaded.validate_for(tiny_model("llama", seed=1))
    with pytest.raises(ValueError, match="schema-1 profile has no fingerprint"):
        HeadProfile.from_dict(dict(old, fingerprint=ModelFingerprint.of(llama).to_dict()))


def test_fingerprint_round_trips_and_bad_fingerprints_are_clear(tmp_path):
    profile = _profile(tiny_model("llama"))
    loaded = HeadProfile.load(profile.save(tmp_path / "p.json"))
    assert loaded.fingerprint.probe == profile.fingerprint.probe
    assert loaded.fingerprint.logprobs == pytest.approx(profile.fingerprint.logprobs, abs=1e-6)
    with pytest.raises(ValueError, match="one log-prob per next token"):
        ModelFingerprint((1, 2, 3), (0.5,))
    with pytest.raises(ValueError, match="Unknown fingerprint fields"):
        ModelFingerprint.from_dict({"probe": [1, 2], "logprobs": [0.1], "atol": 1})
    assert ModelFingerprint.from_dict({"probe": [1, 2], "logprobs": [0.1]}).dtype == "float32"
    with pytest.raises(ValueError, match="fingerprint must be"):
        HeadProfile(model_name="m", n_layers=3, n_heads=4, heads=[(1, 0)], fingerprint="abc")


def test_a_probe_outside_the_vocabulary_never_matches(gpt2):
    fp = ModelFingerprint((5, 10**6), (0.0,))
    assert fp.distance(gpt2) == float("inf") and not fp.matches(gpt2)


# --- SmolLM2 (slow) ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("backend,processing,dtype", [("bridge", False, torch.bfloat16),
                                                      ("hooked", True, torch.float32),
                                                      ("hooked", False, torch.bfloat16)])
def test_shipped_smollm2_profile_is_found_on_every_loading(backend, processing, dtype):
    """The issue's bug: on a bf16 (or hooked) SmolLM2, generate fell back to the interim head set.

    Each axis once (bf16 on each backend, processing); bridge fp32 is tests/test_profile.py's slow test."""
    from pasta_lens import load_model
    from pasta_lens.registry import default_heads

    if backend == "hooked":
        require_backend("hooked")
    model = load_model("smollm2-135m-instruct", backend=backend, processing=processing, dtype=dtype)
    shipped = load_profile("smollm2-135m-instruct")
    assert shipped.fingerprint is not None
    shipped.validate_for(model)
    found = find_profile(model)
    assert found is not None and found[0] == "smollm2-135m-instruct"
    heads, note = default_heads(model)
    assert heads == shipped.heads and "shipped profile" in note
    assert isinstance(generate(model, "The capital of *France* is", max_new_tokens=3), str)
