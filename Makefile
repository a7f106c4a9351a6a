# The README's two commands: `make demo` (main job) and `make test` (the test suite).
# Both create or reuse a local virtual environment in .venv, so a fresh clone needs nothing else in
# Python. Running generated code (HumanEval in the demo, sandbox tests) also needs bubblewrap, a
# system package: both commands check for it and say how to install it when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint sandbox-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pin the CPU build explicitly: an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,all]'
	touch $(STAMP)

install: $(STAMP)

# Says which isolation generated code gets here; without bubblewrap, what is missing and how to get
# it (apt-get install bubblewrap). It does not install system packages itself, nor fail the target:
# the demo then skips HumanEval's execution and says so, and the tests that need it skip.
sandbox-check: $(STAMP)
	@$(PY) -m nl2code.eval.sandbox || { \
	  command -v bwrap >/dev/null || echo "*** Install bubblewrap: sudo apt-get install bubblewrap (Debian/Ubuntu)," \
	    "sudo dnf install bubblewrap (Fedora), sudo pacman -S bubblewrap (Arch); then run make again."; \
	  echo "*** Until then no generated code is executed: the demo skips HumanEval pass@k, sandbox tests skip."; }

demo: $(STAMP) sandbox-check
	$(VENV)/bin/nl2code demo

test: $(STAMP) sandbox-check
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
