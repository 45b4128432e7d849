# Every gate and test layer of lgtm-operator, defined once. CI runs `make test` (.ci/run).
CLUSTER := e2e/cluster.sh
CARGO   ?= cargo
# Integration tests wait on the API server, not the CPU: run more of them at once.
TEST_THREADS ?= 6

.DEFAULT_GOAL := help
.PHONY: help image run stop test lint fmt-check clippy crds crds-check helm-lint unit nginx \
	integration e2e faults docs bench cluster-up cluster-down kubeconfig tools

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## Local control plane + CRDs + operator + samples, until they are Consistent and Available
	@e2e/run.sh

stop: ## Stop what `make run` started, control plane included
	@e2e/run.sh stop

# The fault tests' own control plane (e2e/faults.env), so that breaking it disturbs nothing else.
FAULTS_ENV := $(shell grep -v '^\#' e2e/faults.env)

test: lint unit nginx integration e2e faults ## Every test layer that runs here (what CI runs)
	@echo "make test: all layers passed"

lint: fmt-check clippy crds-check helm-lint ## The gates: formatting, clippy, CRD drift, helm lint

fmt-check: ## cargo fmt --check
	$(CARGO) fmt --all -- --check

clippy: ## cargo clippy, warnings are errors
	$(CARGO) clippy --all-targets -- -D warnings

crds: ## Regenerate crds/ and the chart's CRDs from the Rust types
	$(CARGO) run --quiet --bin crdgen

docs: ## Regenerate docs/runtime-contract.md from the products' run-time contracts
	$(CARGO) run --quiet --bin docgen

crds-check: ## Fail when the checked-in CRDs differ from the Rust types
	$(CARGO) run --quiet --bin crdgen -- --check

helm-lint: ## helm lint the chart (both RBAC modes render)
	@helm=$$($(CLUSTER) tool-path helm) && \
	  $$helm lint --strict charts/lgtm-operator && \
	  $$helm template t charts/lgtm-operator >/dev/null && \
	  $$helm template t charts/lgtm-operator --set watchNamespace=release >/dev/null

unit: ## Unit tests (catalogue, builders, plan and conditions, configs, offline render, code shape)
	$(CARGO) test --lib --bins --test code_shape

nginx: ## Real nginx (Debian's 1.22 and 1.28 from source): nginx -t, routing to stub upstreams, tenants' credentials and scopes
	@e2e/ensure-nginx.sh
	$(CARGO) test --test gateway_nginx --test gateway_tenants -- --test-threads $(TEST_THREADS)
	LGTM_NGINX=$$(e2e/build-nginx.sh) $(CARGO) test --test gateway_nginx --test gateway_tenants -- --test-threads $(TEST_THREADS)

integration: cluster-up ## The operator against the real API server: its children, conditions, bad input, storage probe (real S3 server), real pods, scale-down, zones, tenants
	@# Built before the tests, not by the autoscaling test while the others run beside it.
	@$(CLUSTER) build metrics-server
	$(CARGO) test --test control_plane --test operator --test bad_input --test storage --test real_workers --test scaling --test zones --test tenants -- --test-threads $(TEST_THREADS)

e2e: cluster-up ## The Helm chart installed, the operator run with its RBAC, chainsaw scenarios
	@e2e/e2e.sh

faults: ## API server restarted and down, watches expired, etcd restarted, operator killed: changes still converge
	@status=0; $(CARGO) test --test faults -- --test-threads 1 --nocapture || status=$$?; \
	  env $(FAULTS_ENV) $(CLUSTER) down; exit $$status

image: ## The operator image as an OCI archive (target/image/lgtm-operator.oci.tar), built without Docker
	$(CARGO) build --release --locked --bin lgtm-operator
	e2e/images.sh operator target/release/lgtm-operator oci-archive target/image/lgtm-operator.oci.tar lgtm-operator:$$($(CARGO) pkgid | sed 's/.*[#@]//')
	@echo "push it with any registry client, e.g.: skopeo copy oci-archive:target/image/lgtm-operator.oci.tar docker://REGISTRY/lgtm-operator:TAG"

bench: cluster-up ## Benchmarks: rendering, then convergence of 1, 10, 100 clusters on the local control plane
	$(CARGO) bench --bench render
	$(CARGO) bench --bench convergence

cluster-up: ## Build what is missing and start the local control plane (idempotent)
	@$(CLUSTER) up

cluster-down: ## Stop the local control plane and remove its state
	@$(CLUSTER) down

kubeconfig: ## Print the path of the local control plane's kubeconfig
	@$(CLUSTER) kubeconfig

tools: ## Build the control plane, helm and chainsaw into the tool cache
	@$(CLUSTER) build all
