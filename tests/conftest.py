"""Shared fixtures: tiny random models on both backends, the tokenizer, and the real offline model.

The backend fixtures (``llama``, ``gpt2``, ``tiny``, ``backend``) run each test on the ``TransformerBridge`` and on
the ``HookedTransformer`` of the same weights. TransformerLens 4.x has no HookedTransformer, so there the hooked
cases are skipped; they run in the TransformerLens 3.9 world of ``make test`` (``.venv-tl3``), where the Makefile
sets ``PASTA_LENS_REQUIRE_HOOKED=1`` and a skip becomes a failure (they cannot pass there by not running).
"""

import os

import pytest
import torch

from pasta_lens.backends import BACKENDS, available_backends
from tests.tiny import tiny_model, tiny_tokenizer

REQUIRE_HOOKED = os.environ.get("PASTA_LENS_REQUIRE_HOOKED") == "1"


def require_backend(backend: str) -> None:
    """Skip (TransformerLens 4.x) or fail (``PASTA_LENS_REQUIRE_HOOKED=1``) when ``backend`` is not installed."""
    if backend in available_backends():
        return
    reason = (f"backend {backend!r} needs TransformerLens 3.x (HookedTransformer is gone in 4.x); this case runs "
              "in the TL 3.9 world: `make test-tl3`")
    if REQUIRE_HOOKED:
        pytest.fail(f"PASTA_LENS_REQUIRE_HOOKED=1 but {reason}")
    pytest.skip(reason)


def require_module(name: str, why: str) -> None:
    """Skip without ``name`` installed, except under ``PASTA_LENS_REQUIRE_HOOKED=1`` (the TL 3.9 + SAELens world)."""
    import importlib.util

    if importlib.util.find_spec(name) is not None:
        return
    if REQUIRE_HOOKED:
        pytest.fail(f"PASTA_LENS_REQUIRE_HOOKED=1 but {name} is not installed ({why}).")
    pytest.skip(f"{why}: needs {name}, installed in the TL 3.9 world (`make test-tl3`)")


@pytest.fixture(params=BACKENDS)
def backend(request):
    require_backend(request.param)
    return request.param


@pytest.fixture
def llama(backend):
    return tiny_model("llama", backend=backend)


@pytest.fixture
def gpt2(backend):
    return tiny_model("gpt2", backend=backend)


@pytest.fixture(params=["llama", "gpt2"])
def tiny(request, backend):
    return tiny_model(request.param, backend=backend)


@pytest.fixture(scope="session")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def smollm2():
    """The real offline model (slow tests only)."""
    from pasta_lens import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture(autouse=True)
def _only_data_in_the_repo(monkeypatch):
    """Tests read the CounterFact cases shipped in the package, never a folder a user's $PASTA_LENS_DATA names
    (tests of the override set it themselves)."""
    monkeypatch.delenv("PASTA_LENS_DATA", raising=False)


@pytest.fixture(autouse=True)
def _no_leaked_hooks(request):
    """Every test must leave the shared cached models without hooks."""
    yield
    for backend in available_backends():
        for name in ("llama", "gpt2"):
            model = tiny_model(name, backend=backend)
            leaked = [hp.name for hp in model.hook_points() if hp._forward_hooks or hp._backward_hooks]
            assert not leaked, f"hooks left on tiny {name} ({backend}): {leaked[:5]}"


@pytest.fixture(scope="session")
def smollm2_hooked():
    """SmolLM2 as a HookedTransformer of the same weights, unprocessed (slow tests; needs TransformerLens 3.x)."""
    require_backend("hooked")
    from pasta_lens import load_model

    return load_model("smollm2-135m-instruct", backend="hooked")
