#!/usr/bin/env bash
# Builds (or reuses) trust-manager (cmd/trust-manager of github.com/cert-manager/trust-manager at
# TRUST_MANAGER_VERSION, a `tool` of hack/trust-manager/go.mod) from the Go module proxy by name; no
# upstream source is copied into this repository. Beside the binary it keeps trust-manager's CRDs of the
# same version, taken from the module (deploy/crds), so the tests need no Go once built. Prints the
# directory as the last line of stdout.
#
#   scripts/trust-manager-bins.sh               build if the cache has nothing for hack/trust-manager/go.sum
#   scripts/trust-manager-bins.sh --print-dir   print the cache directory without building
#
# Cache: ${TRUSTED_ISSUER_CLIENT_BINS:-${XDG_CACHE_HOME:-$HOME/.cache}/trusted-issuer/client-bins}/
# trust-manager-<version>-<go.mod+go.sum hash>/. Exit 3: no Go toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=../hack/versions.env
source hack/versions.env
if [ -n "${GOTOOLCHAIN:-}" ]; then export GOTOOLCHAIN; fi
tool=trust-manager-bins
module_dir=$root/hack/trust-manager
module_path=github.com/cert-manager/trust-manager
version=$TRUST_MANAGER_VERSION
version_name=trust-manager
binary=trust-manager
build_target=github.com/cert-manager/trust-manager/cmd/trust-manager
crd_glob='*.yaml'
needed_by="the trust-manager test needs it"
fix_pin="cd hack/trust-manager && go get -tool github.com/cert-manager/trust-manager/cmd/trust-manager@$TRUST_MANAGER_VERSION"
bins_root=${TRUSTED_ISSUER_CLIENT_BINS:-${XDG_CACHE_HOME:-$HOME/.cache}/trusted-issuer/client-bins}

source_hash() {
  (cd "$module_dir" && sha256sum go.mod go.sum) | sha256sum | cut -c1-12
}

# shellcheck source=lib/module-bins.sh
source scripts/lib/module-bins.sh
module_bins "$@"
