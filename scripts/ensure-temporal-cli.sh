#!/usr/bin/env bash
# Provision the Temporal CLI (and tctl) for the README, the tests and CI.
#
# Looks in PATH, then in dosvob's tool cache; only when neither has the binary
# does it build it from the Go module proxy, once per machine. A cold build takes
# minutes, so nothing cached is ever rebuilt.
#
# Usage: scripts/ensure-temporal-cli.sh [temporal|tctl|all]   (default: temporal)
# Prints the absolute path of each binary, one per line.
set -euo pipefail

TOOLS_DIR="${DOSVOB_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dosvob/tools}"
TEMPORAL_MODULE="github.com/temporalio/cli/cmd/temporal@v1.5.1"
TCTL_MODULE="github.com/temporalio/tctl/cmd/tctl@v1.18.4"

ensure() {
  local name="$1" module="$2"
  if [[ -x "$TOOLS_DIR/bin/$name" ]]; then
    echo "$TOOLS_DIR/bin/$name"
    return
  fi
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return
  fi
  local go_bin
  go_bin="$(command -v go || true)"
  [[ -z "$go_bin" && -x /usr/local/go/bin/go ]] && go_bin=/usr/local/go/bin/go
  if [[ -z "$go_bin" ]]; then
    cat >&2 <<MSG
dosvob: the '$name' command is not installed and Go is not available to build it.
Install the Temporal CLI (https://docs.temporal.io/cli#install, e.g. 'brew install temporal'),
or install Go >= 1.22 and run this script again; it will build $module.
MSG
    exit 1
  fi
  mkdir -p "$TOOLS_DIR/bin"
  echo "dosvob: building $name from $module into $TOOLS_DIR/bin (once per machine, takes a few minutes)..." >&2
  # Build into a temporary dir and move atomically so an interrupted build never leaves a half binary.
  local tmp
  tmp="$(mktemp -d "$TOOLS_DIR/build.XXXXXX")"
  if ! GOBIN="$tmp" GOFLAGS="-mod=mod" CGO_ENABLED=0 "$go_bin" install "$module" >&2; then
    rm -rf "$tmp"
    echo "dosvob: could not build $name from $module (see the go error above)." >&2
    return 1
  fi
  mv "$tmp/$name" "$TOOLS_DIR/bin/$name"
  rmdir "$tmp"
  echo "$TOOLS_DIR/bin/$name"
}

case "${1:-temporal}" in
  temporal) ensure temporal "$TEMPORAL_MODULE" ;;
  tctl) ensure tctl "$TCTL_MODULE" ;;
  all)
    ensure temporal "$TEMPORAL_MODULE"
    # tctl is optional (only the schedule tests use it); its module is not served everywhere.
    ensure tctl "$TCTL_MODULE" || echo "dosvob: tctl unavailable; tests that need it will be skipped" >&2
    ;;
  *) echo "usage: $0 [temporal|tctl|all]" >&2; exit 2 ;;
esac
