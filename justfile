# Recipes of the guest check-in realtime monorepo. `./dev <recipe>` works on a fresh
# clone (it installs uv and just first); `just <recipe>` once they are on PATH.

set dotenv-load := false
export UV_LINK_MODE := "copy"

# show the recipes
default:
    @just --list

# install Python dependencies (and the Debian packages the system needs)
setup:
    uv sync --frozen
    bash scripts/ensure-system.sh

# start the whole system (services, gateway) against local RabbitMQ and PostgreSQL
run: setup
    bash scripts/run.sh

# run every test: unit, integration and end-to-end on the real services
test: setup
    uv run pytest -q -rs

# lint: ruff check, ruff format --check, mypy strict
lint:
    uv run ruff check .
    uv run ruff format --check .
    uv run mypy libs/events/src libs/service-kit/src services/checkin-api/src services/realtime-fanout/src services/telemetry-ingest/src tests/support conftest.py

# format the code
fmt:
    uv run ruff format .
    uv run ruff check --fix .

# print a JWT for local use, e.g. `just token org=1 role=MANAGER properties=11,12`
token *args:
    @uv run --frozen python -m service_kit.token {{args}}

# print every event that passes through the exchange, as it passes
tail-events *args:
    uv run --frozen python -m checkin_events.tail {{args}}

# benchmarks of the fanout and the whole path against Nchan (`just bench --quick`)
bench *args:
    bash bench/setup.sh
    uv run --group bench python -m bench.run {{args}}

# soak: polling browsers, steady writes, random disconnects; checks delivery, prints RSS
soak *args:
    PYTHONPATH=. uv run --frozen python scripts/soak.py {{args}}
