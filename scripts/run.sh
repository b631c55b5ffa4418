#!/usr/bin/env bash
# Starts the whole system locally: checks the broker and database, prepares the
# database, then runs every service and the gateway in the foreground (Ctrl-C stops all).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source deploy/local.env

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "PostgreSQL is not answering on 127.0.0.1:5432. Start it with:" >&2
  echo "  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
  exit 1
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "RabbitMQ is not answering on 127.0.0.1:5672. Start it with:" >&2
  echo "  rabbitmq-server -detached" >&2
  exit 1
fi

uv run --frozen python scripts/prepare_database.py
echo
echo "  Open http://127.0.0.1:${GATEWAY_PORT}/ (demo page, through the gateway)"
echo "  Token:  just token org=1 role=ADMIN"
echo
exec uv run --frozen honcho -f deploy/Procfile.local start
