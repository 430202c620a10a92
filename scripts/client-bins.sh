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
module_dir=$root/hack/clients
bins_root=${TRUSTED_ISSUER_CLIENT_BINS:-${XDG_CACHE_HOME:-$HOME/.cache}/trusted-issuer/client-bins}

source_hash() {
  (cd "$module_dir" && sha256sum go.mod go.sum $(find cmd -name '*.go' | sort)) | sha256sum | cut -c1-12
}
dir=$bins_root/cert-manager-$CERT_MANAGER_VERSION-$(source_hash)

case "${1:-}" in
--print-dir)
  echo "$dir"
  exit 0
  ;;
"") ;;
*)
  echo "usage: $0 [--print-dir]" >&2
  exit 2
  ;;
esac

if [ -x "$dir/cert-manager-controllers" ] && [ -d "$dir/crds" ]; then
  echo "client-bins: reusing $dir" >&2
  echo "$dir"
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "client-bins: Go is not installed (https://go.dev/dl/); the cert-manager tests need it" >&2
  exit 3
fi
pinned=$(cd "$module_dir" && go list -m -f '{{.Version}}' github.com/cert-manager/cert-manager)
if [ "$pinned" != "$CERT_MANAGER_VERSION" ]; then
  echo "client-bins: hack/clients/go.mod has cert-manager $pinned, hack/versions.env says $CERT_MANAGER_VERSION" >&2
  echo "  (cd hack/clients && go get github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION && go mod tidy)" >&2
  exit 1
fi
mkdir -p "$bins_root"
work=$(mktemp -d "$bins_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

start=$(date +%s)
echo "client-bins: building cert-manager's controllers $CERT_MANAGER_VERSION into $dir (first time: minutes)" >&2
cd "$module_dir"
export CGO_ENABLED=0
go build -p "${GO_BUILD_P:-2}" -trimpath -ldflags "-s -w" -o "$work/cert-manager-controllers" ./cmd/cert-manager-controllers
module=$(go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
mkdir "$work/crds"
cp "$module"/deploy/crds/cert-manager.io_*.yaml "$work/crds/"
chmod u+w "$work"/crds/*.yaml
printf 'cert-manager=%s\nbuild_seconds=%s\n' "$CERT_MANAGER_VERSION" "$(($(date +%s) - start))" >"$work/VERSIONS"
rm -rf "$dir"
mv "$work" "$dir"
trap - EXIT
echo "client-bins: built in $(($(date +%s) - start))s: $dir" >&2
echo "$dir"
