# `make install` builds .venv once (idempotent); every other target depends on it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch builds that lie on this machine's disk (see DEVELOPERS.md); never a newer release.
ifeq ($(shell uname -m),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: install test demo lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

test: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/python -m pan_cli.demo

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python -m pan_cli.bench

clean:
	rm -rf $(VENV) runs demo-output bench-output *.egg-info
