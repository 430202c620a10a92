#!/usr/bin/env bash
# `make demo-cluster`: the demo on the real thing. Builds or reuses the control plane
# (scripts/cluster-bins.sh) and cert-manager's controllers (scripts/client-bins.sh), starts them with the
# operator on the development token, applies examples/, and ends with the Certificate Ready, its Secret
# verified by openssl and the issuer's key handle printed. SERVE=1 keeps everything running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# shellcheck source=../hack/versions.env
source hack/versions.env
if [ -n "${GOTOOLCHAIN:-}" ]; then export GOTOOLCHAIN; fi
scripts/cluster-bins.sh >/dev/null
scripts/client-bins.sh >/dev/null
exec "$VENV/bin/python" -m tests.cluster.demo ${SERVE:+--serve}
