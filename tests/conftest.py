"""Shared fixtures: tiny random models on both backends, the tokenizer, and the real offline model.

The backend fixtures (``llama``, ``gpt2``, ``tiny``, ``backend``) run each test on the ``TransformerBridge`` and on
the ``HookedTransformer`` of the same weights. TransformerLens 4.x has no HookedTransformer, so there the hooked
cases are skipped; they run in the TransformerLens 3.9 world of ``make test`` (``.venv-tl3``), where the Makefile
sets ``PASTA_LENS_REQUIRE_HOOKED=1`` and a skip becomes a failure (they cannot pass there by not running).
"""

import os
import sys

import pytest
import torch

from pasta_lens.backends import BACKENDS, available_backends
from tests.tiny import cached_models, leaked_hooks, tiny_model, tiny_tokenizer

REQUIRE_HOOKED = os.environ.get("PASTA_LENS_REQUIRE_HOOKED") == "1"


def require_backend(backend: str) -> None:
    """Skip (TransformerLens 4.x) or fail (``PASTA_LENS_REQUIRE_HOOKED=1``) when ``backend`` is not installed."""
    if backend in available_backends():
        return
    reason = (
        f"backend {backend!r} needs TransformerLens 3.x (HookedTransformer is gone in 4.x); this case runs "
        "in the TL 3.9 world: `make test-tl3`"
    )
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


def torchrun(nproc: int = 2) -> list[str]:
    """``torchrun --nproc-per-node N`` with this interpreter (``python -m torch.distributed.run`` is the
    ``torchrun`` console script's own entry point), on a rendezvous port of its own (``--standalone``: a free
    port picked at launch, never the default 29500 that two test runs on one machine would both claim)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]


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


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A folder holding the tiny Llama of ``tests.tiny.tiny_hf_model`` (weights + tokenizer with a chat template),
    to run the CLI on as ``--model DIR``; one copy per test module."""
    from tests.tiny import tiny_hf_model

    path = tmp_path_factory.mktemp("tiny_llama_model")
    hf, tok = tiny_hf_model("llama")
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


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


def _global_module_hooks() -> dict[str, int]:
    """How many process-wide PyTorch module hooks are registered (``register_module_forward_hook`` & co.)."""
    import torch.nn.modules.module as module

    names = (
        "_global_forward_hooks",
        "_global_forward_pre_hooks",
        "_global_backward_hooks",
        "_global_backward_pre_hooks",
    )
    return {name: len(getattr(module, name)) for name in names if hasattr(module, name)}


@pytest.fixture(autouse=True)
def _no_leaked_hooks():
    """Every test must leave the shared cached tiny models (every one built so far, however it was asked for)
    with exactly the hooks they had when built, and no process-wide module hook behind: add hooks only through
    ``model.hooks(...)``, ``steer(...)`` or ``run_with_hooks``, and remove any PyTorch hook in ``finally``."""
    global_before = _global_module_hooks()
    yield
    for key in cached_models():
        leaked = leaked_hooks(key)
        assert not leaked, f"hooks left on the shared tiny model {key}: {leaked[:5]}"
    assert _global_module_hooks() == global_before, "a process-wide PyTorch module hook was left registered"


@pytest.fixture(autouse=True)
def _no_leaked_thread_count():
    """``torch.set_num_threads`` is process-wide: a test (or the CLI it runs in-process with ``--threads``) that
    changes it must restore it, or every later test runs with another thread count. Restored, then failed."""
    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"the test left torch.get_num_threads() at {after} (it was {before}): restore it")


@pytest.fixture(scope="session")
def smollm2_hooked():
    """SmolLM2 as a HookedTransformer of the same weights, unprocessed (slow tests; needs TransformerLens 3.x)."""
    require_backend("hooked")
    from pasta_lens import load_model

    return load_model("smollm2-135m-instruct", backend="hooked")
