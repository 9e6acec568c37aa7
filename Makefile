# Two commands on a fresh machine:  `make demo`  then  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of PyTorch that lies on disk on these machines. GPU users: see README ("GPU install").
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-fast bench clean

$(BIN)/booktower: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[all]"
	@touch $(BIN)/booktower

install: $(BIN)/booktower

demo: install
	$(BIN)/booktower demo --output-dir runs/demo

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .booktower-cache
