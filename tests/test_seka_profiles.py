"""The PASTA head configs imported from the SEKA repository load as profiles of the right shape, with provenance."""

from types import SimpleNamespace

import pytest

from pasta_lens import list_profiles, load_profile

SHAPES = {"qwen3-4b-base": (36, 32, 500), "qwen3-8b-base": (36, 32, 500), "qwen3-14b-base": (40, 40, 500),
          "gemma-3-4b-pt": (34, 8, 272), "gemma-3-12b-pt": (48, 16, 500)}


@pytest.mark.parametrize("prefix", sorted(SHAPES))
def test_each_imported_config_loads_with_its_shape_and_source(prefix):
    name = f"{prefix}-seka-pasta"
    assert name in list_profiles()
    profile = load_profile(name)
    n_layers, n_heads, n_steered = SHAPES[prefix]
    assert (profile.n_layers, profile.n_heads, len(profile.heads)) == (n_layers, n_heads, n_steered)
    assert max(layer for layer, _ in profile.heads) < n_layers and max(h for _, h in profile.heads) < n_heads
    assert profile.method == "seka-pasta-config" and profile.fingerprint is None and profile.weights_hash is None
    prov = profile.provenance
    assert prov["repository"] == "https://github.com/waylonli/SEKA" and len(prov["commit"]) == 40
    assert prov["path"].startswith("pastalib/config/") and "NOTICE-SEKA.md" in prov["license"]
    model = SimpleNamespace(cfg=SimpleNamespace(n_layers=n_layers, n_heads=n_heads))
    profile.validate_for(model)  # no weights identity: the shape is what is checked
    with pytest.raises(ValueError, match="layers x"):
        profile.validate_for(SimpleNamespace(cfg=SimpleNamespace(n_layers=n_layers + 1, n_heads=n_heads)))


def test_gemma_3_4b_config_is_every_head():
    profile = load_profile("gemma-3-4b-pt-seka-pasta")
    assert set(profile.heads) == {(layer, head) for layer in range(34) for head in range(8)}
