# Every target sets up .venv first when needed. Pass Hydra overrides with ARGS="key=value ...";
# `make sweep SWEEP=table3 launcher=slurm` runs the grid sweeps/table3.yaml on a launcher.
# `make test` runs every test; `make test-fast` leaves out the ones marked slow (training subprocesses:
# sweeps, kills, resumes, the real-data run). Tests run in TEST_WORKERS processes (pytest-xdist; every
# test is one-thread and owns its tmp_path): 2 halves the suite on a 2-core machine (CI); 1 for a serial run.
VENV ?= .venv
TEST_WORKERS ?= 2
PY := $(VENV)/bin/python
SWEEP ?= demo
ARGS ?=
RUNS ?= results/runs
OUT ?= results/tables
SOURCE ?= records
PYTEST_ARGS ?=
launcher ?=

.PHONY: setup test test-fast run sweep demo study study-underfit tables bench clean

setup: $(VENV)/.installed

# The stamp is rebuilt when pyproject.toml changes. torch and torchvision come from the pins in
# pyproject.toml (a CUDA build on x86-64 Linux; it runs on the CPU too).
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

run: setup
	$(PY) -m hardsamples.train $(ARGS)

sweep: setup
	$(PY) -m hardsamples.train experiment=$(SWEEP) $(if $(launcher),launcher=$(launcher)) $(ARGS)

demo: setup
	$(MAKE) --no-print-directory sweep SWEEP=demo
	$(MAKE) --no-print-directory tables RUNS=results/runs/demo OUT=results/demo ARGS=print_tables=false

# The study on real Fashion-MNIST in the paper's regime (memorisation; results/fashion_mnist_memorise/,
# its plan in PLAN.md and plan.yaml): both grids, skipping every run already over (the committed
# records), then its tables with the plan's verdicts, and figures. Seconds once done.
MEMORISE := results/fashion_mnist_memorise
study: setup
	$(MAKE) --no-print-directory sweep SWEEP=fashion_mnist_memorise
	$(MAKE) --no-print-directory sweep SWEEP=fashion_mnist_memorise_controls
	$(MAKE) --no-print-directory tables RUNS=$(MEMORISE)/runs OUT=$(MEMORISE) ARGS="plan=$(MEMORISE)/plan.yaml paper_consistency=true"

# The first study (results/fashion_mnist/, superseded: an underfit regime, README "The first study"):
# 55 min on 2 cores (measured), seconds once done.
study-underfit: setup
	$(MAKE) --no-print-directory sweep SWEEP=fashion_mnist
	$(MAKE) --no-print-directory sweep SWEEP=fashion_mnist_controls
	$(MAKE) --no-print-directory tables RUNS=results/fashion_mnist/runs OUT=results/fashion_mnist ARGS=paper_consistency=true

tables: setup
	$(PY) -m hardsamples.tables runs=$(RUNS) out=$(OUT) source=$(SOURCE) $(ARGS)

bench: setup
	$(PY) -m hardsamples.bench $(ARGS)

# Deletes the run records of this checkout (not the committed study under results/fashion_mnist):
# it lists what it would delete and asks first; `make clean YES=1` skips the question.
CLEAN := results/runs results/demo results/tables results/figures outputs multirun
clean:
	@found="$$(ls -d $(CLEAN) 2>/dev/null)"; \
	if [ -z "$$found" ]; then echo "nothing to delete"; exit 0; fi; \
	echo "make clean deletes these run records and outputs:"; echo "$$found" | sed 's/^/  /'; \
	if [ "$(YES)" != 1 ]; then printf "delete them? [y/N] "; read answer; \
	  case "$$answer" in y|Y|yes) ;; *) echo "nothing deleted"; exit 0;; esac; fi; \
	rm -rf $$found && echo "deleted"
