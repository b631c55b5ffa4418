"""The container images, read as Docker would build them (no engine here).

Each image runs as a non-root user with a HEALTHCHECK; the Python ones install the
locked workspace with uv from the repository root, copy every workspace manifest uv
needs, and start the service's ``python -m`` module on its contract port. Every file
a COPY takes from the build context must exist and pass the image's .dockerignore.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy.deploy_files import DEPLOY, PYTHON_SERVICES, REPO

DOCKER = DEPLOY / "docker"
PORTS = {"checkin-api": 8081, "realtime-fanout": 8082, "telemetry-ingest": 8083}
IMAGES = [*PYTHON_SERVICES, "gateway"]
NOT_NEEDED = {"tests", "__pycache__", "node_modules", ".pytest_cache"}


def _instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = (DOCKER / f"{name}.Dockerfile").read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            found.append((keyword.upper(), " ".join(arguments.split())))
    return found


def _final_stage(name: str) -> list[tuple[str, str]]:
    instructions = _instructions(name)
    last_from = max(
        i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"
    )
    return instructions[last_from:]


def _context_sources(name: str) -> list[str]:
    """What the Dockerfile's COPY instructions take from the build context."""
    sources = []
    for keyword, arguments in _instructions(name):
        if keyword == "COPY" and "--from=" not in arguments:
            parts = [p for p in arguments.split() if not p.startswith("--")]
            sources.extend(parts[:-1])
    return sources


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern that matches decides."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").replace("**", "*")
        if fnmatch.fnmatch(path, glob) or fnmatch.fnmatch(path, glob + "/*"):
            ignored = not negated
    return ignored


@pytest.mark.parametrize("name", IMAGES)
def test_image_runs_as_a_non_root_user(name: str) -> None:
    users = [
        arguments for keyword, arguments in _final_stage(name) if keyword == "USER"
    ]

    assert users, f"{name}: the final stage names no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}


@pytest.mark.parametrize("name", IMAGES)
def test_image_checks_its_health_endpoint(name: str) -> None:
    checks = [a for keyword, a in _final_stage(name) if keyword == "HEALTHCHECK"]
    path = "/gateway/healthz" if name == "gateway" else "/healthz"

    assert len(checks) == 1
    assert path in checks[0]


@pytest.mark.parametrize("name", IMAGES)
def test_image_copies_files_that_exist_and_pass_its_dockerignore(
    name: str,
) -> None:
    ignore_file = DOCKER / f"{name}.Dockerfile.dockerignore"
    patterns = [
        line.strip()
        for line in ignore_file.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    for source in _context_sources(name):
        path = REPO / source
        assert path.exists(), f"{name}: COPY {source} does not exist"
        files = (
            [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        )
        needed = [f for f in files if not NOT_NEEDED.intersection(f.parts)]
        dropped = [f for f in needed if _ignored(str(f.relative_to(REPO)), patterns)]
        assert needed, f"{name}: COPY {source} has no file to send"
        assert dropped == [], f"{name}: .dockerignore drops what COPY {source} needs"


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_python_image_installs_the_locked_service_with_uv(name: str) -> None:
    stages = [a for keyword, a in _instructions(name) if keyword == "ARG"]
    runs = " ".join(a for keyword, a in _instructions(name) if keyword == "RUN")

    assert "PYTHON_IMAGE=python:3.11-slim-bookworm" in stages
    assert f"uv sync --frozen --no-dev --package {name}" in runs


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_python_image_copies_every_workspace_manifest(name: str) -> None:
    members = sorted(
        str(p.relative_to(REPO))
        for pattern in ("libs/*/pyproject.toml", "services/*/pyproject.toml")
        for p in REPO.glob(pattern)
    )
    sources = _context_sources(name)

    assert {"pyproject.toml", "uv.lock"} <= set(sources)
    assert set(members) <= set(sources)


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_python_image_copies_the_sources_of_its_workspace_dependencies(
    name: str,
) -> None:
    project = tomllib.loads((REPO / "services" / name / "pyproject.toml").read_text())
    libraries = {
        tomllib.loads(p.read_text())["project"]["name"]: p.parent.relative_to(REPO)
        for p in REPO.glob("libs/*/pyproject.toml")
    }
    requirements = [
        re.split(r"[<>=\[ ;]", requirement)[0]
        for requirement in project["project"]["dependencies"]
    ]
    wanted = [Path(f"services/{name}/src")]
    wanted += [libraries[r] / "src" for r in requirements if r in libraries]
    copied = [Path(source) for source in _context_sources(name)]

    for path in wanted:
        assert any(path.is_relative_to(source) for source in copied), path


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_python_image_starts_the_service_module_on_its_port(name: str) -> None:
    final = dict(_final_stage(name))
    module = PYTHON_SERVICES[name]

    assert final["CMD"] == f'["python", "-m", "{module}"]'
    assert (REPO / "services" / name / "src" / module / "__main__.py").is_file()
    assert final["EXPOSE"] == str(PORTS[name])
    assert f"PORT={PORTS[name]}" in final["ENV"]


def test_gateway_image_serves_the_web_client_with_the_container_config() -> None:
    sources = _context_sources("gateway")

    assert "clients/web" in sources
    assert "deploy/k8s/gateway/nginx.conf" in sources
    assert "deploy/k8s/gateway/shard-route.js" in sources
    assert Path(REPO / "clients/web").is_dir()
