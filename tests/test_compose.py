"""deploy/compose.yaml wires the image `make image` builds to the provisioning already in deploy/."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mcp import Client

from docserver import __version__
from support.podman import IMAGE, NO_IMAGE, PODMAN, podman, wait_for_status
from support.postgres_tcp import postgres_on_loopback
from support.processes import free_port

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
GENERATED_SECRETS = {"metrics-token"}  # written by the operator, see the file's header


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    result: dict[str, Any] = compose["services"]
    return result


STACK = {"docserver", "postgres", "redis", "prometheus", "alertmanager", "grafana", "jaeger"}


def test_it_runs_the_whole_stack(services: dict[str, Any]) -> None:
    assert set(services) == STACK


def test_docserver_is_the_image_make_image_builds_read_only_as_10001(services: dict[str, Any]) -> None:
    docserver = services["docserver"]
    assert docserver["image"] == f"docserver:{__version__}"
    assert (docserver["read_only"], docserver["user"]) == (True, "10001:10001")


def test_every_mounted_file_of_deploy_exists(services: dict[str, Any]) -> None:
    mounted = [
        volume.split(":")[0]
        for service in services.values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]
    missing = [path for path in mounted if not (DEPLOY / path).exists() and Path(path).name not in GENERATED_SECRETS]
    assert mounted
    assert missing == []


# --- run by a compose tool ---------------------------------------------------------
# PyPI's podman-compose (Debian's 1.0.3 cannot run host-network services). Only the docserver
# service runs: the other services' images come from registries, and none is reachable here.
# Adapted for this machine: DOCSERVER_DATABASE_URL names the test PostgreSQL with pgvector (the
# `postgres` service cannot start), and the ports and Redis key prefix are free ones, as other
# processes on the machine may hold 8080/8081 or use the default prefix.

COMPOSE = [str(Path(sys.executable).with_name("podman-compose")), "--podman-path", PODMAN[0]]
COMPOSE_PODMAN_ARGS = ["--podman-args", " ".join(PODMAN[1:])] if PODMAN[1:] else []


@dataclass
class Project:
    folder: Path
    name: str
    metrics_token: str

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*COMPOSE, *COMPOSE_PODMAN_ARGS, "-p", self.name, "-f", str(self.folder / "compose.yaml"), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert not check or result.returncode == 0, f"{' '.join(args)}: {result.stdout}{result.stderr}"
        return result


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A copy of deploy/ with the two files its header says the operator writes."""
    assert IMAGE, NO_IMAGE
    folder = tmp_path_factory.mktemp("compose") / "deploy"
    shutil.copytree(DEPLOY, folder)
    token = secrets.token_hex(16)
    (folder / "compose.env").write_text(f"METRICS_TOKEN={token}\n")
    (folder / "metrics-token").write_text(token)
    project = Project(folder, f"docserver-test-{uuid.uuid4().hex[:8]}", token)
    try:
        yield project
    finally:
        project.compose("down", "--volumes", check=False)


@dataclass
class Served:
    container: str
    url: str
    admin_url: str


@pytest.fixture(scope="module")
def served(project: Project) -> Iterator[Served]:
    """The README's two steps: `run --rm docserver ingest --sample`, then the service's server."""
    port, admin = free_port(), free_port()
    with postgres_on_loopback("compose") as database_url:
        overrides = [
            *("-e", f"DOCSERVER_DATABASE_URL={database_url}", "-e", f"DOCSERVER_ADMIN_ADDR=127.0.0.1:{admin}"),
            *("-e", f"DOCSERVER_REDIS_KEY_PREFIX={project.name}:"),
        ]
        project.compose("run", "--rm", "--no-deps", *overrides, "docserver", "ingest", "--sample")
        container = f"{project.name}-server"
        project.compose(
            *("run", "--detach", "--no-deps", "--name", container, *overrides, "docserver"),
            *("serve", "--host", "127.0.0.1", "--port", str(port)),
        )
        try:
            served = Served(container, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}")
            wait_for_status(f"{served.url}/readyz", container)
            yield served
        finally:
            podman("rm", "--force", container, check=False)


@pytest.mark.slow
@pytest.mark.image
def test_podman_compose_reads_the_whole_file(project: Project) -> None:
    config = yaml.safe_load(project.compose("config").stdout)
    assert set(config["services"]) == STACK


@pytest.mark.slow
@pytest.mark.image
def test_the_docserver_service_is_ready_on_postgresql(served: Served) -> None:
    ready = httpx.get(f"{served.url}/readyz").json()
    assert ready["status"] == "ok"
    assert json.loads(podman("inspect", served.container).stdout)[0]["Config"]["User"] == "10001:10001"


@pytest.mark.slow
@pytest.mark.image
def test_its_metrics_need_the_token_from_compose_env(served: Served, project: Project) -> None:
    assert httpx.get(f"{served.admin_url}/metrics").status_code == 401
    headers = {"Authorization": f"Bearer {project.metrics_token}"}
    assert "docserver_build_info" in httpx.get(f"{served.admin_url}/metrics", headers=headers).text


@pytest.mark.slow
@pytest.mark.image
async def test_an_mcp_client_searches_what_the_compose_run_ingested(served: Served) -> None:
    async with Client(f"{served.url}/mcp", mode="auto") as client:
        result = await client.call_tool("search_docs", {"query": "how do I set the database URL"})
    assert result.structured_content is not None
    assert {hit["source"] for hit in result.structured_content["results"]} == {"docserver-docs"}
