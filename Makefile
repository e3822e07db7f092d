# Two entry points for a new machine with Python 3.11+:
#   make run   - set up .venv and start the app on the offline demo market
#   make test  - set up .venv (with dev and text extras) and run the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test bench clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt requirements-text.txt
	$(PY) -m pip install -q -r requirements-dev.txt -r requirements-text.txt
	touch $@

run: $(VENV)/.runtime
	$(VENV)/bin/streamlit run app.py

test: $(VENV)/.dev
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadgroup

bench: $(VENV)/.dev
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .data artifacts
