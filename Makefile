# trusted-issuer: `make help` lists the targets. CI calls the same targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# What runs on every token (make test-tokens): the signing core and the operator, without the suites
# that drive SoftHSM2's own files and several operators on one SoftHSM2 token by design.
TOKEN_SUITES ?= tests/integration tests/operator --ignore=tests/operator/test_faults.py \
	--ignore=tests/operator/test_ha.py
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: dev
dev: ## install system packages (as root) and the virtualenv, and create the development SoftHSM2 token
	@VENV=$(VENV) scripts/bootstrap.sh
	@$(VENV)/bin/trusted-issuer hsm init-dev-token >/dev/null

.PHONY: demo
demo: dev ## the main job: sandbox API server + operator; a TrustedIssuer signs a CertificateRequest in the token
	@VENV=$(VENV) scripts/sandbox.sh demo

.PHONY: demo-signer
demo-signer: dev ## the signing core alone: CLI creates a CA in the token, signs a CSR, openssl verifies it
	@VENV=$(VENV) scripts/demo-signer.sh

.PHONY: sandbox
sandbox: dev ## keep the sandbox API server and the operator running; prints a KUBECONFIG for kubectl
	@VENV=$(VENV) scripts/sandbox.sh serve

.PHONY: cluster-bins
cluster-bins: ## build (or reuse) kube-apiserver, kube-controller-manager and etcd from the Go module proxy
	@scripts/cluster-bins.sh

.PHONY: cluster
cluster: dev ## keep a real control plane (etcd, kube-apiserver, controller-manager) running; prints its KUBECONFIG
	@VENV=$(VENV) scripts/cluster.sh

.PHONY: client-bins
client-bins: ## build (or reuse) cert-manager's own controllers (v1.21.1) from the Go module proxy
	@scripts/client-bins.sh

.PHONY: trust-manager-bins
trust-manager-bins: ## build (or reuse) trust-manager (v0.25.0) from the Go module proxy
	@scripts/trust-manager-bins.sh

.PHONY: demo-cluster
demo-cluster: dev ## the real thing: control plane + operator + cert-manager's controllers; a Certificate Ready
	@VENV=$(VENV) scripts/demo-cluster.sh

.PHONY: test
test: ## run the tests (unit, integration on a real SoftHSM2 token; e2e skips without Docker)
	@VENV=$(VENV) scripts/bootstrap.sh
	@$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-tokens
test-tokens: ## the signing-core and operator suites on a TPM 2.0 (swtpm + tpm2-pkcs11) and on opencryptoki
	@VENV=$(VENV) scripts/bootstrap.sh
	@status=0; for token in tpm opencryptoki; do \
		echo "==> the token suites on $$token"; \
		TRUSTED_ISSUER_TEST_TOKEN=$$token $(PY) -m pytest $(TOKEN_SUITES) $(PYTEST_ARGS) || status=1; \
	done; exit $$status

.PHONY: lint
lint: ## ruff, mypy and the import contracts (the wall between signer and controller)
	@VENV=$(VENV) scripts/bootstrap.sh
	@$(VENV)/bin/ruff check issuer sandbox tests benchmarks charts/trusted-issuer/files
	@$(VENV)/bin/ruff format --check issuer sandbox tests benchmarks charts/trusted-issuer/files
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports

.PHONY: chart-lint
chart-lint: ## lint and render the Helm chart with every HSM backend; validate against Kubernetes schemas
	@VENV=$(VENV) scripts/bootstrap.sh
	@$(PY) -m pytest tests/chart -q $(PYTEST_ARGS)

.PHONY: e2e
e2e: ## kind + cert-manager + image + chart: a Certificate signed in the token (docker, kind, helm, internet)
	@VENV=$(VENV) scripts/bootstrap.sh
	@$(PY) -m pytest tests/e2e -m e2e -rs $(PYTEST_ARGS)

BENCH_REQUESTS ?= 1000
BENCH_HELD ?= 10000
BENCH_ARGS ?=

.PHONY: bench
bench: dev ## benchmarks: signing core (pipeline/raw token/software), the operator end to end vs the floor, then each token
	@status=0; \
	$(PY) -m benchmarks.bench_signer || status=$$?; \
	$(PY) -m benchmarks.bench_operator --requests $(BENCH_REQUESTS) --held $(BENCH_HELD) $(BENCH_ARGS) \
		|| status=$$?; \
	$(PY) -m benchmarks.bench_tokens || status=$$?; \
	exit $$status

.PHONY: clean
clean: ## remove the virtualenv, the development token and caches
	rm -rf $(VENV) .dev .pytest_cache .mypy_cache .ruff_cache
