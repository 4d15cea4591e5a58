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

.PHONY: install test demo lint bench weights clean

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
	$(BIN)/python -m pan_cli.task_bench

# The pretrained derain model that ships in the package, trained by `pan train` itself on the
# built-in photos with rain synthesized on the fly, then scored on the two held-out photos.
# THREADS=N pins torch's CPU threads (the shipped file was made with THREADS=1).
W := build/weights
PAN := $(BIN)/pan
THREADS ?=
weights: install
	rm -rf $(W)
	$(PAN) data photos -o $(W)/photos > /dev/null
	$(PAN) train derain --synthesize --data $(W)/photos --image-size 96 --steps 2000 --seed 0 \
		--run-dir $(W)/run --checkpoint-every 250 --keep 0 $(if $(THREADS),--threads $(THREADS))
	$(PAN) export $(W)/run/latest.pt -o pan_cli/weights/derain.pt
	$(PAN) data photos --held-out -o $(W)/held-out-photos > /dev/null
	$(PAN) data make derain --from $(W)/held-out-photos --draws 3 --seed 10000 -o $(W)/held-out > /dev/null
	$(PAN) infer --task derain --checkpoint pan_cli/weights/derain.pt $(W)/held-out/A -o $(W)/derained > /dev/null
	@echo "rainy input:"; $(PAN) eval --pred $(W)/held-out/A --ref $(W)/held-out/B
	@echo "de-rained by pan_cli/weights/derain.pt:"; $(PAN) eval --pred $(W)/derained --ref $(W)/held-out/B

clean:
	rm -rf $(VENV) runs build demo-output bench-output *.egg-info
