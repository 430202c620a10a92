# shellcheck shell=bash
# What scripts/client-bins.sh and scripts/trust-manager-bins.sh share: build (or reuse) one Go binary of
# a module pinned in hack/versions.env, from the Go module proxy by name, into a cache directory keyed by
# version and source hash, with the module's CRDs beside it (so the tests need no Go once built). The
# caller sets, then calls module_bins "$@":
#   tool             name in messages (client-bins, trust-manager-bins)
#   module_dir       the wrapper module under hack/
#   module_path      the upstream module (github.com/cert-manager/...)
#   version          the pinned version (from hack/versions.env)
#   version_name     its name in VERSIONS and in the cache directory (cert-manager, trust-manager)
#   binary           the binary's file name; build_target: what `go build` builds
#   crd_glob         which of the module's deploy/crds files to keep
#   needed_by        who needs Go, for the message when it is missing
#   bins_root        the cache root; source_hash (a function): the key of the sources
#   fix_pin          the command that fixes a go.mod pinning another version
# Prints the directory as the last line of stdout. Exit 3: no Go toolchain.

module_bins() {
  local dir=$bins_root/$version_name-$version-$(source_hash)
  case "${1:-}" in
  --print-dir)
    echo "$dir"
    return 0
    ;;
  "") ;;
  *)
    echo "usage: $0 [--print-dir]" >&2
    return 2
    ;;
  esac
  if [ -x "$dir/$binary" ] && [ -d "$dir/crds" ]; then
    echo "$tool: reusing $dir" >&2
    echo "$dir"
    return 0
  fi
  if ! command -v go >/dev/null; then
    echo "$tool: Go is not installed (https://go.dev/dl/); $needed_by" >&2
    return 3
  fi
  local pinned
  pinned=$(cd "$module_dir" && go list -m -f '{{.Version}}' "$module_path")
  if [ "$pinned" != "$version" ]; then
    echo "$tool: ${module_dir#"$root"/}/go.mod has $version_name $pinned, hack/versions.env says $version" >&2
    echo "  ($fix_pin)" >&2
    return 1
  fi
  mkdir -p "$bins_root"
  work=$(mktemp -d "$bins_root/.build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  local start
  start=$(date +%s)
  echo "$tool: building $version_name $version into $dir (first time: minutes)" >&2
  (
    cd "$module_dir"
    export CGO_ENABLED=0
    go build -p "${GO_BUILD_P:-2}" -trimpath -ldflags "-s -w" -o "$work/$binary" "$build_target"
  )
  local module
  module=$(cd "$module_dir" && go list -m -f '{{.Dir}}' "$module_path")
  mkdir "$work/crds"
  # shellcheck disable=SC2086  # the glob is the caller's, expanded here
  cp "$module"/deploy/crds/$crd_glob "$work/crds/"
  chmod u+w "$work"/crds/*.yaml
  printf '%s=%s\nbuild_seconds=%s\n' "$version_name" "$version" "$(($(date +%s) - start))" >"$work/VERSIONS"
  rm -rf "$dir"
  mv "$work" "$dir"
  trap - EXIT
  echo "$tool: built in $(($(date +%s) - start))s: $dir" >&2
  echo "$dir"
}
