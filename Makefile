# PayGate Chaos Kit. `make up` runs the kit; `make test` runs the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CACHE := .cache
FERRETDB := $(CACHE)/bin/ferretdb
HELM := $(CACHE)/bin/helm
APT_PACKAGES := redis-server prometheus chromium postgresql haproxy default-jre-headless maven
PYTEST_ARGS ?=
# Parallel test processes (pytest-xdist), a module per process at a time: most tests wait on servers.
PYTEST_WORKERS ?= 4
SOAK_ARGS ?=

.PHONY: up test bench soak venv bench-venv services wrk ferretdb helm zipkin clean experiment rehearse

## venv: the Python environment, rebuilt when pyproject.toml changes
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[load,test,chaos]'
	touch $@

## bench-venv: the venv plus the benchmark's extras (py-spy)
bench-venv: $(VENV)/.bench-installed
$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[load,test,chaos,bench]'
	touch $@

## services: Debian's redis-server, prometheus, chromium, postgresql, haproxy, and a JRE and Maven for Zipkin
## (as root; skipped when present)
services:
	@missing=""; for b in redis-server prometheus promtool chromium psql runuser haproxy java mvn; do command -v $$b >/dev/null || missing=1; done; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing=1; \
	if [ -n "$$missing" ]; then \
	  echo "installing $(APT_PACKAGES) from Debian"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -o DPkg::Lock::Timeout=300 -y -q --no-install-recommends $(APT_PACKAGES); \
	fi

## wrk: Debian's wrk, the benchmark's load generator (as root; skipped when present)
wrk:
	@command -v wrk >/dev/null || { echo "installing wrk from Debian"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk; }

## ferretdb: the MongoDB-wire server for the tests (on PostgreSQL), built with Go (build cache kept in ~/.cache/go-build)
ferretdb: $(FERRETDB)
$(FERRETDB): tools/ferretdb/main.go tools/ferretdb/go.mod tools/ferretdb/go.sum
	mkdir -p $(CACHE)/bin
	cd tools/ferretdb && go build -trimpath -o ../../$(FERRETDB) .

## helm: Helm v3 for the chart's tests (deploy/helm), built with Go from tools/helm (about 4 min cold on 2 cores;
## with the build cache in ~/.cache/go-build a rebuild only links, seconds). The -X stamps are Helm's own release build's:
## its version, and the Kubernetes version of its client-go (what `helm template` and `helm lint` assume).
helm: $(HELM)
$(HELM): tools/helm/go.mod tools/helm/go.sum
	mkdir -p $(CACHE)/bin
	cd tools/helm && v=$$(go list -m -f '{{.Version}}' helm.sh/helm/v3) && k8s=$$(go list -m -f '{{.Version}}' k8s.io/client-go) \
	  && minor=$${k8s#v0.} && minor=$${minor%%.*} \
	  && go build -trimpath -o ../../$(HELM) -ldflags "-X helm.sh/helm/v3/internal/version.version=$$v \
	    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$$minor \
	    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$$minor" \
	    helm.sh/helm/v3/cmd/helm

## zipkin: the Zipkin server jar (trace store and UI), fetched once from Maven Central by Maven into .cache/zipkin/
## (Maven keeps its own copy in ~/.m2). Its version is pinned in rig/traces.py, the one place.
zipkin: venv
	@$(PY) -c 'from rig.traces import fetch_jar; fetch_jar()'

## env: .env for `docker compose up`: .env.example with fresh secrets (an existing .env is left as it is)
ENV_SECRETS := ADMIN_TOKEN PAYGATE_SECRET_KEY GRAFANA_ADMIN_PASSWORD
.PHONY: env
env:
	@if [ -e .env ]; then echo ".env exists: left as it is"; else \
	  umask 077 && python3 -c 'import re, secrets, sys; print(re.sub(r"(?m)^(" + "|".join(sys.argv[1:]) + ")=$$", \
	    lambda m: m.group(0) + secrets.token_urlsafe(24), open(".env.example").read()), end="")' $(ENV_SECRETS) > .env.tmp \
	  && mv .env.tmp .env && echo "wrote .env, with fresh secrets: $(ENV_SECRETS)"; fi

## up: the kit on :8000 (SQLite file, redis-server when installed; MONGO_URL/REDIS_URL for your own), Locust on :8089,
## Prometheus on :9090 and Zipkin on :9411 when installed
up: venv
	@$(PY) tools/up.py

## token: the admin token `make up` uses (kept in .cache/admin-token, or ADMIN_TOKEN), printed again
.PHONY: token
token: venv
	@$(PY) tools/up.py --token

## experiment: one Chaos Toolkit experiment against the running kit (E=audit-under-load; KIT_URL for compose)
E ?=
experiment: venv
	@test -n "$(E)" || { echo "say which: make experiment E=<name>, one of: $$(cd experiments && ls *.yaml | sed 's/.yaml//' | tr '\n' ' ')"; exit 2; }
	$(PY) -m experiments.run $(E)

## rehearse: calibrate the phases' user counts and the retry storm's range on this machine against the running kit (about 12 min)
rehearse: venv
	$(PY) -m loadtest.calibrate

## test: ruff and mypy (app/), then the whole suite against real Redis, FerretDB on PostgreSQL, gunicorn, Prometheus,
## Zipkin and Chromium
test: venv services ferretdb wrk helm zipkin
	$(VENV)/bin/ruff check .
	$(PY) -m mypy
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=12 $(PYTEST_ARGS)

## bench: the benchmark; writes bench/RESULTS.md (all but the soak block)
bench: bench-venv services ferretdb wrk
	$(PY) -m bench.run

## soak: `make up` for 75 min under 40 shoppers; writes the soak block of bench/RESULTS.md (SOAK_ARGS="--minutes 5")
soak: venv
	$(PY) -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(CACHE) .pytest_cache
