CLUSTER := e2e/cluster.sh

.DEFAULT_GOAL := help
.PHONY: help cluster-up cluster-down kubeconfig tools

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

cluster-up: ## Build what is missing and start the local control plane (idempotent)
	@$(CLUSTER) up

cluster-down: ## Stop the local control plane and remove its state
	@$(CLUSTER) down

kubeconfig: ## Print the path of the local control plane's kubeconfig
	@$(CLUSTER) kubeconfig

tools: ## Build the control plane, helm and chainsaw into the tool cache
	@$(CLUSTER) build all
