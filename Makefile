# The two README commands. Both set up .venv/ first (idempotent, ~1 min when cached).
PY := .venv/bin/python
# Test processes (pytest-xdist), one intra-op thread each: the reference machine
# has 2 cores. `make test WORKERS=auto` uses every core.
WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest tests -ra -n $(WORKERS) --dist loadfile

.PHONY: setup demo test test-fast

setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PYTEST)

test-fast: setup
	$(PYTEST) -m "not slow"
