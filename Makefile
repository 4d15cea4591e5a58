# `make install` builds .venv once (idempotent); every other target depends on it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The torch builds this project is tested with; never a newer release.
ifeq ($(shell uname -m),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: install test demo lint bench weights weights-derain weights-inpaint gpu-inpaint bf16-check figures clean

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
	$(BIN)/python tools/demo.py

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python tools/bench.py
	$(BIN)/python tools/task_bench.py
	$(BIN)/python tools/large_image_bench.py
	$(BIN)/python tools/pipeline_bench.py

# The pretrained models that ship in the package, trained by `pan train` itself:
#   make weights PHOTOS=DIR [RAIN_VAL=PAIRS] [THREADS=1] [GPU_DEVICE=cuda WORKERS=14]
# PHOTOS is a folder of clean photos (the shipped models used the 351 photos listed in the
# model cards in docs/models); files whose names start with HOLD_OUT are never trained on and score
# the models instead. RAIN_VAL (optional) is a folder of real rainy/clean pairs (input/ +
# target/) that scores the derain model while it trains (every 5th pair) and at the end (all): validation only.
W := build/weights
PAN := $(BIN)/pan
THREADS ?= 1
HOLD_OUT ?= kodak24_
DERAIN_STEPS ?= 2252
INPAINT_STEPS ?= 10500
INPAINT_DECAY ?= 5500
TUNE_STEPS ?= 9000
TUNE_DECAY ?= 7000
GPU_STEPS ?= 5622
GPU_DECAY ?= 4385
GPU_DEVICE ?= cuda
WORKERS ?= 14
TIME_LIMIT ?= 36000
RUN := --threads $(THREADS) --time-limit $(TIME_LIMIT) --checkpoint-every 250 --keep 2 --sample-every 500 -q

weights: weights-derain weights-inpaint

$(W)/photos: $(VENV)/.installed
	@test -n "$(PHOTOS)" || { echo "give PHOTOS=DIR: a folder of clean photos" >&2; exit 2; }
	rm -rf $(W)/photos $(W)/held-out && mkdir -p $(W)/photos $(W)/held-out
	for f in $(abspath $(PHOTOS))/*; do case "$$(basename $$f)" in \
		$(HOLD_OUT)*) ln -s "$$f" $(W)/held-out/ ;; *.md|*.txt) ;; *) ln -s "$$f" $(W)/photos/ ;; esac; done
	@echo "training photos: $$(ls $(W)/photos | wc -l); held out: $$(ls $(W)/held-out | wc -l)"

# derain: the dilated residual T (a 125 px view), PAN objective with a half-width D, mixed rain
# (light, heavy, photoshop): stage 1 is the run's step 2252; stage 2 fine-tunes its export with
# PReNet's negative-SSIM pixel term, and the shipped model is its step 500 (the best of a 3000-step
# run on the validation pairs, whose learning rate was constant to there; docs/models/derain.md)
DERAIN_SSIM_STEPS ?= 500
weights-derain: $(W)/photos
	rm -rf $(W)/derain $(W)/derain-ssim $(W)/rain-val
	# validation while training: every 5th pair of RAIN_VAL (scoring all of them each time costs too much)
	$(if $(RAIN_VAL),mkdir -p $(W)/rain-val/input $(W)/rain-val/target && \
		ls $(abspath $(RAIN_VAL))/input | awk 'NR % 5 == 1' | while read f; do \
		ln -s $(abspath $(RAIN_VAL))/input/$$f $(W)/rain-val/input/ && ln -s $(abspath $(RAIN_VAL))/target/$$f $(W)/rain-val/target/; done)
	$(PAN) train derain --synthesize --data $(W)/photos --rain mixed --generator dilated --image-size 96 \
		--d-width 0.5 --steps $(DERAIN_STEPS) --seed 0 --run-dir $(W)/derain $(RUN) \
		$(if $(RAIN_VAL),--val $(W)/rain-val --val-every 250)
	$(PAN) export $(W)/derain/latest.pt -o $(W)/derain-stage1.pt --overwrite
	$(PAN) train derain --synthesize --data $(W)/photos --rain mixed --finetune $(W)/derain-stage1.pt --pixel-loss ssim \
		--steps $(DERAIN_SSIM_STEPS) --seed 1 --run-dir $(W)/derain-ssim $(RUN) $(if $(RAIN_VAL),--val $(W)/rain-val --val-every 250)
	$(PAN) export $(W)/derain-ssim/latest.pt -o pan_cli/weights/derain.pt --overwrite
	rm -rf $(W)/held-out-rain $(W)/builtin-held-out $(W)/builtin-light
	$(PAN) data make derain --from $(W)/held-out --rain mixed --seed 10000 -o $(W)/held-out-rain -q > /dev/null
	@echo "held-out photos, mixed rain (RGB):"
	$(PAN) eval --task derain --checkpoint pan_cli/weights/derain.pt --data $(W)/held-out-rain | tail -1
	$(PAN) data photos --held-out -o $(W)/builtin-held-out > /dev/null
	$(PAN) data make derain --from $(W)/builtin-held-out --draws 3 --rain light --seed 10000 -o $(W)/builtin-light -q > /dev/null
	@echo "built-in held-out photos, light rain (RGB):"
	$(PAN) eval --task derain --checkpoint pan_cli/weights/derain.pt --data $(W)/builtin-light | tail -1
	$(if $(RAIN_VAL),@echo "$(RAIN_VAL) (Y, as papers score):")
	$(if $(RAIN_VAL),$(PAN) eval --task derain --checkpoint pan_cli/weights/derain.pt --data $(RAIN_VAL) --channel y | tail -1)

# inpaint: slim mask-channel U-Net correcting a push-pull fill (unet-fill), PAN objective with a
# half-width D, holes of every kind, crops of random zoom, the learning rate falling linearly
# to 0 over the last 5500 steps; then fine-tuned from that run's best checkpoint with 4x the
# pixel weight at half the learning rate, falling to 0 over the last 7000 of 9000 steps.
# Both stages are scored on the held-out photos (256x256) with half-side centre holes. A third
# stage fine-tunes stage 2's export in batches of 16 on a GPU (GPU_DEVICE; 6 minutes on one H200
# with WORKERS=14 loader processes, several hours on a CPU), on a copy of the photos with the long
# side at most 640 px. The shipped model is its last step, scored on half-side holes and on
# free-form strokes, beside the mean-colour and biharmonic fills.
weights-inpaint: $(W)/photos
	rm -rf $(W)/inpaint $(W)/inpaint-tune $(W)/inpaint-gpu $(W)/photos-640 $(W)/inpaint-val-half $(W)/inpaint-val-strokes
	$(PAN) data make inpaint --from $(W)/held-out --size 256 --holes half --seed 1 -o $(W)/inpaint-val-half -q > /dev/null
	$(PAN) data make inpaint --from $(W)/held-out --size 256 --holes strokes --seed 1 -o $(W)/inpaint-val-strokes -q > /dev/null
	$(PAN) train inpaint --data $(W)/photos --generator unet-fill --zoom --lambda-pix 100 --d-width 0.5 \
		--steps $(INPAINT_STEPS) --lr-decay $(INPAINT_DECAY) --seed 0 --run-dir $(W)/inpaint --val $(W)/inpaint-val-half --val-every 500 $(RUN)
	$(PAN) train inpaint --data $(W)/photos --finetune $(W)/inpaint/best.pt --lambda-pix 400 --lr 1e-4 \
		--steps $(TUNE_STEPS) --lr-decay $(TUNE_DECAY) --seed 1 --run-dir $(W)/inpaint-tune --val $(W)/inpaint-val-half --val-every 500 $(RUN)
	$(PAN) export $(W)/inpaint-tune/latest.pt -o $(W)/inpaint-stage2.pt --overwrite
	$(MAKE) $(W)/photos-640
	$(PAN) train inpaint --data $(W)/photos-640 --finetune $(W)/inpaint-stage2.pt --lambda-pix 400 --lr 1e-4 \
		--batch-size 16 --steps $(GPU_STEPS) --lr-decay $(GPU_DECAY) --seed 1 --device $(GPU_DEVICE) --workers $(WORKERS) \
		--run-dir $(W)/inpaint-gpu --checkpoint-every 500 --keep 2 --sample-every 0 -q
	$(PAN) export $(W)/inpaint-gpu/latest.pt -o pan_cli/weights/inpaint.pt --overwrite
	$(PAN) eval --task inpaint --checkpoint pan_cli/weights/inpaint.pt --data $(W)/inpaint-val-half | tail -3
	$(PAN) eval --task inpaint --checkpoint pan_cli/weights/inpaint.pt --data $(W)/inpaint-val-strokes | tail -3
	@# a second held-out set when RAIN_VAL is given: the clean photos of its pairs (never trained on)
	$(if $(RAIN_VAL),for h in half strokes; do rm -rf $(W)/inpaint-rainval-$$h && \
		$(PAN) data make inpaint --from $(abspath $(RAIN_VAL))/target --size 256 --holes $$h --seed 1 -o $(W)/inpaint-rainval-$$h -q > /dev/null && \
		$(PAN) eval --task inpaint --checkpoint pan_cli/weights/inpaint.pt --data $(W)/inpaint-rainval-$$h | tail -3 || exit 1; done)

# The shipped inpainting model's GPU stage (stage 3 above) on its own, on one GPU machine: copy
# there the 640 px photos (`make build/weights/photos-640 PHOTOS=DIR` here: under 64 MiB) and
# stage 2's export; the run decodes the photos once, synthesizes the holes on the GPU and
# writes profile.json (crops/s, data_fraction):
#   make gpu-inpaint GPU_PHOTOS=photos-640 START=inpaint-stage2.pt [GPU_BATCH=16 WORKERS=8]
GPU_BATCH ?= 16
gpu-inpaint: $(VENV)/.installed
	@test -n "$(GPU_PHOTOS)" -a -n "$(START)" || { echo "give GPU_PHOTOS=DIR START=STAGE2.pt" >&2; exit 2; }
	$(PAN) train inpaint --data $(GPU_PHOTOS) --finetune $(START) --lambda-pix 400 --lr 1e-4 \
		--batch-size $(GPU_BATCH) --steps $(GPU_STEPS) --lr-decay $(GPU_DECAY) --seed 1 --device $(GPU_DEVICE) \
		--workers $(WORKERS) --profile --cache $(W)/cache --run-dir $(W)/inpaint-gpu --checkpoint-every 500 \
		--keep 2 --sample-every 0 -q

$(W)/photos-640: $(W)/photos
	rm -rf $@ && $(BIN)/python tools/shrink_photos.py $(W)/photos $@ 640
	@du -sh $@

# The model cards' pictures (docs/*.jpg) from the shipped models:
#   make figures RAIN_VAL=PAIRS PHOTOS=DIR   (the held-out photos are HOLD_OUT* files of PHOTOS)
figures: $(W)/photos
	@test -n "$(RAIN_VAL)" || { echo "give RAIN_VAL=PAIRS: the Rain100H validation pairs" >&2; exit 2; }
	$(BIN)/python tools/figures.py $(RAIN_VAL) $(W)/held-out

# Does bf16 autocast train as well as fp32? Same recipe and steps, two seeds each, scored on
# RAIN_VAL in Y as papers do (docs/benchmarks.md, "Precision"): make bf16-check PHOTOS=DIR RAIN_VAL=PAIRS
BF16_STEPS ?= 200
bf16-check: $(W)/photos
	@test -n "$(RAIN_VAL)" || { echo "give RAIN_VAL=PAIRS: real rainy/clean pairs to score" >&2; exit 2; }
	rm -rf $(W)/bf16-check
	@for p in fp32 bf16; do for s in 0 1; do \
		$(PAN) train derain --synthesize --data $(W)/photos --rain mixed --generator idcgan --image-size 64 --d-width 0.5 \
			--steps $(BF16_STEPS) --seed $$s --precision $$p --threads $(THREADS) --sample-every 0 -q \
			--run-dir $(W)/bf16-check/$$p-$$s > /dev/null || exit 1; \
		echo "$$p seed $$s: $$($(PAN) eval --task derain --checkpoint $(W)/bf16-check/$$p-$$s/latest.pt \
			--data $(RAIN_VAL) --channel y --no-baselines | tail -1) ($$(tail -1 $(W)/bf16-check/$$p-$$s/metrics.jsonl | \
			sed 's/.*"elapsed_s": \([0-9.]*\).*/\1/') s)"; done; done

clean:
	rm -rf $(VENV) runs build demo-output bench-output *.egg-info
