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
module_dir=$root/hack/trust-manager
bins_root=${TRUSTED_ISSUER_CLIENT_BINS:-${XDG_CACHE_HOME:-$HOME/.cache}/trusted-issuer/client-bins}

source_hash() {
  (cd "$module_dir" && sha256sum go.mod go.sum) | sha256sum | cut -c1-12
}
dir=$bins_root/trust-manager-$TRUST_MANAGER_VERSION-$(source_hash)

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

if [ -x "$dir/trust-manager" ] && [ -d "$dir/crds" ]; then
  echo "trust-manager-bins: reusing $dir" >&2
  echo "$dir"
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "trust-manager-bins: Go is not installed (https://go.dev/dl/); the trust-manager test needs it" >&2
  exit 3
fi
pinned=$(cd "$module_dir" && go list -m -f '{{.Version}}' github.com/cert-manager/trust-manager)
if [ "$pinned" != "$TRUST_MANAGER_VERSION" ]; then
  echo "trust-manager-bins: hack/trust-manager/go.mod has trust-manager $pinned, hack/versions.env says $TRUST_MANAGER_VERSION" >&2
  echo "  (cd hack/trust-manager && go get -tool github.com/cert-manager/trust-manager/cmd/trust-manager@$TRUST_MANAGER_VERSION)" >&2
  exit 1
fi
mkdir -p "$bins_root"
work=$(mktemp -d "$bins_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

start=$(date +%s)
echo "trust-manager-bins: building trust-manager $TRUST_MANAGER_VERSION into $dir (first time: minutes)" >&2
cd "$module_dir"
export CGO_ENABLED=0
go build -p "${GO_BUILD_P:-2}" -trimpath -ldflags "-s -w" -o "$work/trust-manager" github.com/cert-manager/trust-manager/cmd/trust-manager
module=$(go list -m -f '{{.Dir}}' github.com/cert-manager/trust-manager)
mkdir "$work/crds"
cp "$module"/deploy/crds/*.yaml "$work/crds/"
chmod u+w "$work"/crds/*.yaml
printf 'trust-manager=%s\nbuild_seconds=%s\n' "$TRUST_MANAGER_VERSION" "$(($(date +%s) - start))" >"$work/VERSIONS"
rm -rf "$dir"
mv "$work" "$dir"
trap - EXIT
echo "trust-manager-bins: built in $(($(date +%s) - start))s: $dir" >&2
echo "$dir"
