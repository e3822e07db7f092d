# Two entry points for a new machine with Python 3.11+:
#   make run   - set up .venv and start the app on the offline demo market
#   make test  - set up .venv (with dev and text extras) and run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# PyTorch's CPU wheels when their index is reachable: on PyPI the same torch pin pulls CUDA (GBs).
TORCH_CPU := $(shell $(PYTHON) -c "import urllib.request as u; u.urlopen('https://download.pytorch.org/whl/cpu/', timeout=3); print('--extra-index-url https://download.pytorch.org/whl/cpu')" 2>/dev/null)

.PHONY: run test bench clean

$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt requirements-text.txt
	$(PY) -m pip install -q $(TORCH_CPU) -r requirements-dev.txt -r requirements-text.txt
	touch $@

run: $(VENV)/.runtime
	$(VENV)/bin/streamlit run app.py

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadgroup

bench: $(VENV)/.dev
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .data artifacts
