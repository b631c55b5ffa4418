#!/usr/bin/env bash
# Prepares a machine for `just bench`: nginx with the Nchan module (Debian packages),
# and the local PostgreSQL and RabbitMQ the fanout and the check-in API need.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || missing+=(libnginx-mod-nchan)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench: installing ${missing[*]} from Debian" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "bench: starting PostgreSQL" >&2
  $sudo pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
if command -v rabbitmqctl >/dev/null 2>&1 && ! rabbitmqctl -q status >/dev/null 2>&1; then
  echo "bench: starting RabbitMQ" >&2
  $sudo rabbitmq-server -detached
  for _ in $(seq 1 60); do
    rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1 && break
    sleep 1
  done
fi
