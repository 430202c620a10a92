#!/usr/bin/env bash
# `make cluster`: a real control plane (etcd, kube-apiserver, kube-controller-manager built by
# scripts/cluster-bins.sh) on 127.0.0.1 with our CRDs, cert-manager's CRDs and the chart applied; prints
# the admin KUBECONFIG and runs until Ctrl-C, which stops every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# shellcheck source=../hack/versions.env
source hack/versions.env
if [ -n "${GOTOOLCHAIN:-}" ]; then export GOTOOLCHAIN; fi
scripts/cluster-bins.sh >/dev/null
exec "$VENV/bin/python" -m tests.cluster.controlplane
