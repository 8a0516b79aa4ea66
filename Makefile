# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN ?= runs/demo
# Seconds of GAN training in the demo (empty: the profile's 600); a CPU without AVX-512 needs about
# 1800 for readable letters (docs/results.md, "The demo"). A new budget needs a new RUN.
GAN_BUDGET_S ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-fast bench clean install

install: $(STAMP)

# Reinstall when the package metadata changes; `pip install -e` keeps the code live.
$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m eeg2image_tf.pipeline --profile demo --set char --data-root data --run $(RUN) \
		$(if $(GAN_BUDGET_S),--set-stage gan.time_budget_s=$(GAN_BUDGET_S))

# Two pytest processes, a test file each at a time: much of a test's time is single-threaded
# (start-up, tracing), which the second process overlaps (docs/performance.md).
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" tests

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf runs build dist *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
