# sglang-fleet: one-command setup. `make test` works on a fresh machine (Python 3.11 + Go).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# Binary cache (control-plane builds, bench output): SGLANG_FLEET_CACHE or CACHE=... moves it.
SGLANG_FLEET_CACHE ?= $(HOME)/.cache/sglang-fleet
CACHE ?= $(SGLANG_FLEET_CACHE)
export SGLANG_FLEET_CACHE := $(CACHE)
# pytest args, e.g. `make test PYTEST_ARGS="-k radix -x"`
PYTEST_ARGS ?=

.PHONY: print-cache help venv cluster-bins monitoring-bins node-deps node-bins images test test-unit crds demo bench dev-cluster dev-cluster-down clean

help:
	@echo "make test              install everything needed and run the whole suite"
	@echo "make demo              end-to-end demo (see README)"
	@echo "make crds              regenerate crds/ from the pydantic API types"
	@echo "make bench             benchmarks (not tests)"
	@echo "make images            build the operator and runtime images (buildah, no daemon) for the local node"
	@echo "make dev-cluster       start the local cluster (control plane, real node, LWS, kwok GPU nodes) in the background"
	@echo "make dev-cluster-down  stop it and put the host back as it was"

# The venv is rebuilt when pyproject.toml changes (stamp file).
$(VENV)/.stamp: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo ">> installing sglang-fleet with [runtime,test] extras into $(VENV) (torch is large: minutes the first time)"
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --progress-bar off -e '.[runtime,test]'
	@touch $@

venv: $(VENV)/.stamp

cluster-bins:
	@tests/cluster/build.sh >/dev/null

monitoring-bins:
	@tests/cluster/build.sh monitoring >/dev/null

# Debian packages for the node test bed and the image builder (root; quiet when installed).
node-deps:
	@tests/cluster/node-deps.sh

# The node test bed: the control plane plus kubelet, kube-proxy, LWS, kwok, CoreDNS, pause, and
# prometheus + promtool for the monitoring tests (tests/monitoring; alone: `make monitoring-bins`).
node-bins: node-deps
	@tests/cluster/build.sh node >/dev/null

# Our Dockerfiles built with buildah on a locally made Debian base; cached on their inputs.
images: node-deps
	@tests/cluster/images.sh

# The Go builds (CPU) and the image builds (mostly downloads and disk) run side by side.
test: venv node-deps
	@$(MAKE) --no-print-directory -j2 node-bins images
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc = 5 ]; then echo "pytest ran no tests: that is a failure"; exit 1; fi; exit $$rc

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The chart ships the same CRD (helm installs charts/*/crds/ before the templates).
crds: venv
	$(PY) -m sglang_operator.api.crd --write crds/
	$(PY) -m sglang_operator.api.crd --write charts/sglang-operator/crds/

# A real fleet on this machine (tests/e2e/demo.py); KEEP=1 leaves it running.
demo: venv node-bins images
	@$(PY) -m tests.e2e.demo

# Benchmarks, not tests: shared-prefix cache on/off, structured output, speculative decoding and per-step overhead vs HF (bench), SMG routing
# policies (bench.routing), the operator at 1,000 SGLangDeployments on the node bed (bench.operator_scale).
bench: venv node-bins
	$(PY) -m bench
	$(PY) -m bench.routing
	$(PY) -m bench.operator_scale

dev-cluster: venv node-bins images
	@$(PY) -m tests.cluster.dev up

dev-cluster-down: venv
	@$(PY) -m tests.cluster.dev down

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

print-cache:
	@echo $$SGLANG_FLEET_CACHE
