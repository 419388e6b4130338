import pytest
import torch

from tests.tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="session")
def llama():
    return tiny_model("llama")


@pytest.fixture(scope="session")
def gpt2():
    return tiny_model("gpt2")


@pytest.fixture(params=["llama", "gpt2"])
def tiny(request):
    return tiny_model(request.param)


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
    for name in ("llama", "gpt2"):
        model = tiny_model(name)
        leaked = [hp.name for hp in model.hook_points() if hp._forward_hooks or hp._backward_hooks]
        assert not leaked, f"hooks left on tiny {name}: {leaked[:5]}"
