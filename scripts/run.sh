#!/usr/bin/env bash
# Starts the whole system locally: checks the broker, the database and the local ports,
# prepares the database, then runs every service and the gateway in the foreground
# (Ctrl-C stops all) and says when all of them are ready.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source deploy/local.env

# host and port of a URL, with the scheme's usual port when it names none
host_port() {
  python3 -c 'import sys, urllib.parse as p; u = p.urlsplit(sys.argv[1]);
print(u.hostname or "127.0.0.1", u.port or int(sys.argv[2]))' "$1" "$2"
}
answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

read -r db_host db_port < <(host_port "$DATABASE_URL" 5432)
if ! answers "$db_host" "$db_port"; then
  echo "PostgreSQL is not answering on $db_host:$db_port (DATABASE_URL). Start it with:" >&2
  echo "  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
  exit 1
fi
read -r amqp_host amqp_port < <(host_port "$AMQP_URL" 5672)
if ! answers "$amqp_host" "$amqp_port"; then
  echo "RabbitMQ is not answering on $amqp_host:$amqp_port (AMQP_URL). Start it with:" >&2
  echo "  rabbitmq-server -detached" >&2
  exit 1
fi
for name in CHECKIN_API_PORT FANOUT_PORT TELEMETRY_PORT GATEWAY_PORT; do
  if answers 127.0.0.1 "${!name}"; then
    echo "Port ${!name} ($name) is already taken: another ./dev run, or something" >&2
    echo "else. Stop it, or choose another port: $name=<port> ./dev run" >&2
    exit 1
  fi
done

uv run --frozen python scripts/prepare_database.py

# Says once when every service is ready (or that one is not, after two minutes).
(
  urls=(
    "http://127.0.0.1:$CHECKIN_API_PORT/readyz"
    "http://127.0.0.1:$FANOUT_PORT/readyz"
    "http://127.0.0.1:$TELEMETRY_PORT/readyz"
    "http://127.0.0.1:$GATEWAY_PORT/gateway/healthz"
  )
  if python3 scripts/wait_ready.py 120 "${urls[@]}"; then
    echo
    echo "  Ready: open http://127.0.0.1:${GATEWAY_PORT}/ (demo page, through the gateway)"
    echo "  Token: ./dev token org=1 role=ADMIN"
    echo
  else
    echo "  Not ready after 120 s: see the service lines above." >&2
  fi
) &

exec uv run --frozen honcho -f deploy/Procfile.local start
