# Generative AI, Hands-On. `make lab` to learn, `make test` to check everything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP_INSTALL_FLAGS ?=
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test browser-test nbval install instructor build check bench fast-bench grade site clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_INSTALL_FLAGS) -r requirements.txt
	touch $@

install: $(VENV)/.installed  ## create .venv and install everything

$(VENV)/.instructor: $(VENV)/.installed requirements-instructor.txt
	$(PY) -m pip install -q $(PIP_INSTALL_FLAGS) -r requirements-instructor.txt
	touch $@

instructor: $(VENV)/.instructor  ## add nbgrader (for route 2 of docs/INSTRUCTORS.md and the tests)

lab: install  ## open JupyterLab on lesson 01
	$(VENV)/bin/jupyter lab $(LAB_FLAGS) lessons/01_discriminative_vs_generative.ipynb

test: instructor  ## unit tests + every notebook (fast mode, also in real JupyterLab) + lessons/ in sync with solutions/
	$(PY) -m course check
	GENAI_FAST=1 MPLBACKEND=Agg $(PY) -m pytest tests lessons solutions --nbval-lax --nbval-current-env -p no:cacheprovider

browser-test: instructor  ## every solution notebook in real JupyterLab in headless chromium (sliders, images, errors)
	GENAI_FAST=1 $(PY) -m pytest -q tests/test_lab_browser.py -p no:cacheprovider

NOTEBOOKS ?= lessons solutions
nbval: install  ## the notebooks only (fast mode), NOTEBOOKS="solutions" for some: the Colab-versions CI job runs this in .venv-colab
	GENAI_FAST=1 MPLBACKEND=Agg $(PY) -m pytest $(NOTEBOOKS) --nbval-lax --nbval-current-env -p no:cacheprovider

build: install  ## regenerate lessons/ from solutions/ and stamp setup cells
	$(PY) -m course build

check: install
	$(PY) -m course check

bench: install  ## run solution notebooks at full settings -> benchmarks/results.json (not part of CI)
	$(PY) -m course bench $(LESSONS)

$(VENV)/.site-installed: requirements-site.txt $(VENV)/.installed
	$(PY) -m pip install -q $(PIP_INSTALL_FLAGS) -r requirements-site.txt
	touch $@

site: $(VENV)/.site-installed  ## the course website -> _site/full/html (FAST=1: fast mode -> _site/fast/html)
	$(PY) -m course site $(if $(filter-out 0,$(FAST)),--fast,)

grade: install  ## grade student notebooks: make grade SUBMISSIONS="submissions/" [GRADE_FLAGS="--jobs 4"]
	$(PY) -m course grade $(SUBMISSIONS) $(GRADE_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache
