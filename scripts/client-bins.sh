#!/usr/bin/env bash
# Builds (or reuses) the real clients of the issuer: cert-manager's own certificate controllers
# (hack/clients/cmd/cert-manager-controllers, a small main of ours over cert-manager's module at
# CERT_MANAGER_VERSION), from the Go module proxy by name; no upstream source is copied into this
# repository. Beside the binary it keeps cert-manager's CRDs of the same version, taken from the module
# (deploy/crds), so the tests need no Go once built. Prints the directory as the last line of stdout.
#
#   scripts/client-bins.sh               build if the cache has nothing for hack/clients/go.sum
#   scripts/client-bins.sh --print-dir   print the cache directory without building
#
# Cache: ${TRUSTED_ISSUER_CLIENT_BINS:-${XDG_CACHE_HOME:-$HOME/.cache}/trusted-issuer/client-bins}/
# cert-manager-<version>-<go.mod+go.sum+main hash>/. Exit 3: no Go toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=../hack/versions.env
source hack/versions.env
if [ -n "${GOTOOLCHAIN:-}" ]; then export GOTOOLCHAIN; fi
tool=client-bins
module_dir=$root/hack/clients
module_path=github.com/cert-manager/cert-manager
version=$CERT_MANAGER_VERSION
version_name=cert-manager
binary=cert-manager-controllers
build_target=./cmd/cert-manager-controllers
crd_glob='cert-manager.io_*.yaml'
needed_by="the cert-manager tests need it"
fix_pin="cd hack/clients && go get github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION && go mod tidy"
bins_root=${TRUSTED_ISSUER_CLIENT_BINS:-${XDG_CACHE_HOME:-$HOME/.cache}/trusted-issuer/client-bins}

source_hash() {
  (cd "$module_dir" && sha256sum go.mod go.sum $(find cmd -name '*.go' | sort)) | sha256sum | cut -c1-12
}

# shellcheck source=lib/module-bins.sh
source scripts/lib/module-bins.sh
module_bins "$@"
