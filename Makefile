# Generative AI, Hands-On. `make lab` to learn, `make test` to check everything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP_INSTALL_FLAGS ?=
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test nbval install build check bench fast-bench clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_INSTALL_FLAGS) -r requirements.txt
	touch $@

install: $(VENV)/.installed  ## create .venv and install everything

lab: install  ## open JupyterLab on lesson 01
	$(VENV)/bin/jupyter lab $(LAB_FLAGS) lessons/01_discriminative_vs_generative.ipynb

test: install  ## unit tests + every notebook (fast mode) + lessons/ in sync with solutions/
	$(PY) -m course check
	GENAI_FAST=1 MPLBACKEND=Agg $(PY) -m pytest tests lessons solutions --nbval-lax --nbval-current-env -p no:cacheprovider

nbval: install  ## every notebook (fast mode) only: the Colab-versions CI job runs this in .venv-colab
	GENAI_FAST=1 MPLBACKEND=Agg $(PY) -m pytest lessons solutions --nbval-lax --nbval-current-env -p no:cacheprovider

build: install  ## regenerate lessons/ from solutions/ and stamp setup cells
	$(PY) -m course build

check: install
	$(PY) -m course check

bench: install  ## run solution notebooks at full settings -> benchmarks/results.json (not part of CI)
	$(PY) -m course bench $(LESSONS)

clean:
	rm -rf $(VENV) .pytest_cache
