# dcube-edge: the README's commands. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
EXTRAS ?= train,quant,openvino,dicom,sign,serve,dev
BIN    := $(VENV)/bin
DEMO   ?= demo
USE    ?= Demonstration on generated phantoms only; not for any clinical use.

.PHONY: install demo test test-isa bench bench-console screenshots results lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo: install
	rm -rf $(DEMO)
	$(BIN)/dcube-edge demo-data $(DEMO)/data --per-class 100 --val-per-class 30 --size 64
	$(BIN)/dcube-edge demo-data $(DEMO)/scans --per-class 2 --size 64 --seed 7
	$(BIN)/dcube-edge demo-data $(DEMO)/heldout --per-class 30 --size 64 --seed 11
	$(BIN)/dcube-edge demo-data $(DEMO)/loops --per-class 1 --size 64 --seed 13 --dicom --screen jpeg --frames 30
	$(BIN)/dcube-edge train $(DEMO)/data --out $(DEMO)/run --preset tiny
	$(BIN)/dcube-edge baseline $(DEMO)/data --out $(DEMO)/resnet18 --model resnet18 --preset tiny
	$(BIN)/dcube-edge export $(DEMO)/run --out $(DEMO)/engine-ort-fp32 --intended-use "$(USE)"
	$(BIN)/dcube-edge export $(DEMO)/resnet18 --out $(DEMO)/resnet18-ort-fp32 --intended-use "$(USE)"
	for e in engine-ort-fp32 resnet18-ort-fp32; do \
	  $(BIN)/dcube-edge evaluate $(DEMO)/$$e $(DEMO)/heldout --json $(DEMO)/$$e.eval.json --plot $(DEMO)/$$e.plots && \
	  $(BIN)/dcube-edge card $(DEMO)/$$e --eval $(DEMO)/$$e.eval.json || exit 1; done
	$(BIN)/dcube-edge classify $(DEMO)/engine-ort-fp32 $(DEMO)/scans/benign $(DEMO)/scans/malignant $(DEMO)/scans/normal
	$(BIN)/dcube-edge classify $(DEMO)/engine-ort-fp32 $(DEMO)/loops --recursive
	$(BIN)/dcube-edge bench $(DEMO)/engine-ort-fp32 $(DEMO)/resnet18-ort-fp32 --torch $(DEMO)/run --batch-sizes 1,8 --iterations 20

test: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -ra --durations=15 -n 2 --dist loadgroup tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# Every test that compares numbers across backends or CPU classes (marker `backends`) again as the other CPU
# classes, on a machine of a higher one (oneDNN's dispatch cap, which PyTorch and OpenVINO honour):
# AVX512_CORE_BF16 is an AMD EPYC's class, AVX512_CORE_VNNI a Xeon without bf16.
ISAS ?= AVX512_CORE_BF16 AVX512_CORE_VNNI
test-isa: install
	for isa in $(ISAS); do echo "== ONEDNN_MAX_CPU_ISA=$$isa"; ONEDNN_MAX_CPU_ISA=$$isa OMP_NUM_THREADS=1 \
	  $(BIN)/python -m pytest -q -ra -n 2 --dist loadgroup -m backends tests || exit 1; done

# ruff, then the type checker (mypy, pinned: a new release finds new errors; .ci/typecheck holds it to the baseline)
MYPY ?= mypy==2.4.1
lint: install
	$(BIN)/python -m pip install -q ruff "$(MYPY)"
	$(BIN)/ruff check dcube_edge export calibration runtimes research tests
	$(BIN)/python .ci/typecheck

clean:
	rm -rf $(DEMO) .pytest_cache build *.egg-info

# Latency tables for benchmarks/README.md, filed under the CPU class of the machine that runs it
# (benchmarks/amx, benchmarks/avx512-bf16, ...; see `dcube-edge bench --help` for GPU options).
# ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 make bench runs an AMX CPU as the AVX512-BF16 class (PyTorch and OpenVINO
# both honour it) and files the tables under benchmarks/avx512-bf16-capped: what AMX buys, on one machine.
BENCH ?= bench-out
bench: install
	test -d $(BENCH)/phantoms || $(BIN)/dcube-edge demo-data $(BENCH)/phantoms --per-class 40 --size 128
	$(BIN)/python -c "from dcube_edge.bench import bench_run as r; print(r('$(BENCH)/paper', 'paper')); print(r('$(BENCH)/small', 'small'))"
	tag=$$($(BIN)/python -c "from dcube_edge.runtimes import isa; print(isa.tag())"); mkdir -p benchmarks/$$tag; \
	$(BIN)/dcube-edge bench $(BENCH)/paper --matrix --figures --calibration $(BENCH)/phantoms --batch-sizes 1,8 \
	  --iterations 10 --warmup 2 --compile --profile --vs-benchmark-app --json benchmarks/$$tag/paper.json --csv benchmarks/$$tag/paper.csv \
	  --plot benchmarks/$$tag/paper.png && \
	$(BIN)/dcube-edge bench $(BENCH)/small --matrix --figures --calibration $(BENCH)/phantoms --batch-sizes 1,8 \
	  --iterations 30 --warmup 5 --compile --vs-benchmark-app --json benchmarks/$$tag/small.json --csv benchmarks/$$tag/small.csv \
	  --plot benchmarks/$$tag/small.png
	$(BIN)/python -c "from pathlib import Path; from dcube_edge.bench import write_report as w; w(Path('benchmarks'))" > /dev/null

# The console's page benchmark (docs/benchmarks.md) on a random-weight tiny engine, and its screenshots
# (docs/serve.md) from generated phantoms, through Debian's Chromium.
bench-console: install
	test -d $(BENCH)/console-engine || { $(BIN)/dcube-edge init $(BENCH)/console-run --preset tiny && \
	  $(BIN)/dcube-edge export $(BENCH)/console-run --out $(BENCH)/console-engine; }
	$(BIN)/python -m dcube_edge.bench.ui_pages $(BENCH)/console-engine --rows 10000 --repeats 30

screenshots: install
	$(BIN)/python -m research.console_screenshots docs/figures

# docs/results.md: trains every row of research/ablation.py's plan not yet trained (hours on 2 CPU
# cores; interrupt and rerun to resume), then renders the tables from whatever is trained.
RESULTS ?= runs/ablation
DATA    ?= ../shared/data
results: install
	$(BIN)/python -m research.ablation run $(RESULTS) --data $(DATA); rc=$$?; \
	$(BIN)/python -m research.ablation report $(RESULTS) docs/results.md && exit $$rc
