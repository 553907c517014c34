# Set-up and entry points. The CPU torch pin lives here, not in pyproject.toml, so GPU users who
# `pip install hfcontrast` keep the CUDA build they already have.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
PYTEST_ARGS ?=
VENV_MIN ?= .venv-min

.PHONY: install install-test data demo test test-fast test-min lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[demo]"

install-test: install data
	$(BIN)/pip install -q -e ".[demo,test]"

# Fashion-MNIST for the image and CLIP demos/tests (Debian's package). Under CI=true a failed install fails
# here; elsewhere the tests that need it are skipped, and pytest prints how many at the end.
FIX_DATA = sudo apt-get update && sudo apt-get install -y dataset-fashion-mnist
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
		if command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1; then \
			echo "installed Fashion-MNIST (dataset-fashion-mnist)"; \
		elif [ "$$CI" = "true" ]; then \
			echo "error: Fashion-MNIST could not be installed, and CI=true needs every image test to run. Fix: $(FIX_DATA)" >&2; exit 1; \
		else \
			echo "WARNING: Fashion-MNIST could not be installed ($(FIX_DATA)): the image and CLIP tests that need it will be SKIPPED"; \
		fi; \
	fi

demo: install
	$(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no recipes/simcse.py

# The single-process tests on both cores (pytest-xdist), then in one session the ones that launch processes and every
# benchmark script's --smoke run, two at a time (one queue: neither tier waits on the other's slowest test). A module
# whose tests share one launch (xdist_group) runs on one worker (--dist loadgroup).
test: install-test
	$(BIN)/python -m ruff check hfcontrast recipes tests benchmarks
	$(BIN)/python -m mypy hfcontrast
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not distributed and not benchmark" -n 2 $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "distributed or benchmark" -n 2 --dist loadgroup $(PYTEST_ARGS)

test-fast: install-test
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not distributed and not benchmark" $(PYTEST_ARGS)

# The declared minimum of every dependency (.ci/minimum-versions.txt), in a venv of its own, on the
# fast suite: every lower bound in pyproject.toml is a version this target ran. The compile suite and the README's
# pasted blocks run in `make test` only: torch is the same pinned wheel in both venvs, and the README's blocks are
# whole recipe runs whose library calls the rest of the suite makes on the floors too (CI < 30 min).
test-min: data
	$(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install -q --upgrade pip
	$(VENV_MIN)/bin/pip install -q "$(TORCH_PIN)"
	$(VENV_MIN)/bin/pip install -q -c .ci/minimum-versions.txt -e ".[demo,test]"
	$(VENV_MIN)/bin/python -m pytest -q -p no:cacheprovider -m "not distributed and not benchmark" -n 2 \
		--ignore tests/test_compile.py --ignore tests/test_readme.py $(PYTEST_ARGS)
