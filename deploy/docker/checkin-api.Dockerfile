# syntax=docker/dockerfile:1.7
# Image of checkin-api, the system of record: guest check-ins, the per-org event
# sequence, the outbox and its relay.
# Build from the repository root (the uv workspace and its lock live there):
#   docker build -f deploy/docker/checkin-api.Dockerfile -t guest-checkin/checkin-api .
# Stage 1 installs the locked dependencies into /app/.venv with uv and the workspace
# packages editable from /src: the services find files beside their sources (alembic
# migrations in services/<name>/migrations), so /src keeps the repository's layout.
# Stage 2 copies the virtualenv and /src onto a slim Python, run as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# The workspace's manifests first: the dependency layer is rebuilt only when they or
# the lock change. uv checks every workspace member, so all of them are copied.
COPY pyproject.toml uv.lock ./
COPY libs/events/pyproject.toml libs/events/
COPY libs/service-kit/pyproject.toml libs/service-kit/
COPY services/checkin-api/pyproject.toml services/checkin-api/
COPY services/realtime-fanout/pyproject.toml services/realtime-fanout/
COPY services/telemetry-ingest/pyproject.toml services/telemetry-ingest/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package checkin-api --no-install-workspace

# The shared libraries and this service (their tests stay out: .dockerignore).
COPY libs libs
COPY services/checkin-api services/checkin-api
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package checkin-api \
    && python -m compileall -q libs services

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 checkin \
    && useradd --system --uid 10001 --gid checkin --no-create-home checkin
COPY --from=build /app/.venv /app/.venv
COPY --from=build /src /src
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8081
WORKDIR /app
USER 10001:10001
EXPOSE 8081
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8081'), timeout=2)"]
CMD ["python", "-m", "checkin_api"]
