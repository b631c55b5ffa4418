#!/usr/bin/env bash
# Renders the gateway's nginx.conf into a prefix directory and prints its path.
#
# usage: render.sh <prefix-dir>
# Ports come from the environment (deploy/local.env names them); the web root is the
# absolute path of clients/web. The prefix gets the pid file, logs and temp paths, so
# nginx runs as the current user without touching /etc/nginx or /var.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
prefix="${1:?usage: render.sh <prefix-dir>}"
mkdir -p "$prefix/tmp"
prefix="$(cd "$prefix" && pwd)"
web_root="${WEB_ROOT:-$root/clients/web}"

sed \
  -e "s|@@PREFIX@@|$prefix|g" \
  -e "s|@@WEB_ROOT@@|$web_root|g" \
  -e "s|@@GATEWAY_HOST@@|${GATEWAY_HOST:-127.0.0.1}|g" \
  -e "s|@@GATEWAY_PORT@@|${GATEWAY_PORT:-8080}|g" \
  -e "s|@@CHECKIN_API_PORT@@|${CHECKIN_API_PORT:-8081}|g" \
  -e "s|@@FANOUT_PORT@@|${FANOUT_PORT:-8082}|g" \
  -e "s|@@TELEMETRY_PORT@@|${TELEMETRY_PORT:-8083}|g" \
  "$here/nginx.conf.template" >"$prefix/nginx.conf"
echo "$prefix/nginx.conf"
