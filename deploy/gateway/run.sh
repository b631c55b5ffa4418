#!/usr/bin/env bash
# Renders the gateway config and runs nginx in the foreground as the current user.
#
# usage: run.sh [prefix-dir]   (default: var/gateway in the repository)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="${1:-$here/../../var/gateway}"
if ! command -v nginx >/dev/null 2>&1; then
  bash "$here/../../scripts/ensure-system.sh"
fi
conf="$(bash "$here/render.sh" "$prefix")"
prefix="$(dirname "$conf")"
nginx -t -q -c "$conf" -p "$prefix" -e "$prefix/error.log"
exec nginx -c "$conf" -p "$prefix" -e "$prefix/error.log" -g 'daemon off;'
