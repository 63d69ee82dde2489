# Two commands on a fresh machine with Python >= 3.10 and make:  `make demo`  and  `make test`.
# Both create .venv and install what they need. torch is installed first and pinned to the CPU build, so no
# package can pull a multi-GB CUDA build in behind it; GPU users: `make install TORCH=torch` (see README).
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,openvino]"
	# test dependency only: the reference DeepCache, checked against slimfusion's DeepCache plans (its own pins
	# would pull another torch, so without its dependencies; 0.1.1 runs on the diffusers installed above)
	$(BIN)/python -m pip install --quiet --no-deps "DeepCache==0.1.1"
	# test dependency only: torch-fidelity's InceptionV3 for the offline FID test, in its own folder (beside a CPU
	# torch without torchvision it would break torchmetrics' image metrics, which import it whenever installed)
	$(BIN)/python -m pip install --quiet --no-deps --target $(VENV)/fid-extra "torch-fidelity==0.4.0"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/slimfusion demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# pytest exits 5 when it collects no test, which fails this target: an empty suite never passes silently.
# Two pytest-xdist workers of one thread each: most tests wait on single-threaded work (imports of CLI processes,
# Python overhead of tiny models), so two workers finish the suite in far less time than one of two threads.
test: lint
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
