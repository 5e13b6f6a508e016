"""The container image runs as shipped: non-root, read-only root filesystem, database on /data.

`make image-test` (part of `make test`) builds the image and runs these tests
against it; they need podman and the image named by DOCSERVER_IMAGE
(DOCSERVER_PODMAN: the podman command line, e.g. `podman --runtime runc`).
They carry the `image` marker: `make pytest` leaves them to `make image-test`,
and run without DOCSERVER_IMAGE they fail saying so.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from mcp import Client

from docserver import __version__
from support.processes import free_port

IMAGE = os.environ.get("DOCSERVER_IMAGE", "")
PODMAN = shlex.split(os.environ.get("DOCSERVER_PODMAN", "podman"))
SHUTDOWN_TIMEOUT = 5

pytestmark = [pytest.mark.slow, pytest.mark.image]


@pytest.fixture(autouse=True, scope="module")
def _an_image_is_named() -> None:
    assert IMAGE, "no image named: run `make image-test`, or set DOCSERVER_IMAGE to a built image"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=120, check=check)


@dataclass
class Container:
    name: str
    url: str

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def volume() -> Iterator[str]:
    """A named volume holding the database, filled once with docserver's own docs."""
    name = f"docserver-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    try:
        podman("run", "--rm", "--network", "host", "--read-only", "-v", f"{name}:/data", IMAGE, "ingest", "--sample")
        yield name
    finally:
        podman("volume", "rm", "--force", name, check=False)


def start(volume: str) -> Container:
    """The image's own entrypoint, read-only, on a free loopback port; returns once /healthz answers."""
    name = f"docserver-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    podman(
        *("run", "--detach", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp"),
        *("-v", f"{volume}:/data", "-e", f"DOCSERVER_SHUTDOWN_TIMEOUT={SHUTDOWN_TIMEOUT}", IMAGE),
        *("serve", "--host", "127.0.0.1", "--port", str(port)),
    )
    container = Container(name, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{container.url}/healthz", timeout=1).status_code == 200:
                return container
        except httpx.TransportError:
            time.sleep(0.2)  # polling a port that is not open yet
    raise AssertionError(f"the container never answered /healthz:\n{container.logs()}")


@pytest.fixture(scope="module")
def server(volume: str) -> Iterator[Container]:
    container = start(volume)
    try:
        yield container
    finally:
        podman("rm", "--force", container.name, check=False)


def test_it_answers_healthz_and_readyz(server: Container) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert "hint" not in ready.json()


async def test_an_mcp_client_searches_the_documentation_on_the_volume(server: Container) -> None:
    async with Client(f"{server.url}/mcp", mode="auto") as client:
        result = await client.call_tool("search_docs", {"query": "how do I set the database URL"})
    assert result.structured_content is not None
    assert {hit["source"] for hit in result.structured_content["results"]} == {"docserver-docs"}


def test_it_runs_as_the_non_root_user_10001(server: Container) -> None:
    assert podman("exec", server.name, "id", "-u").stdout.strip() == "10001"


def test_the_root_filesystem_is_read_only(server: Container) -> None:
    attempt = podman("exec", server.name, "touch", "/opt/docserver/probe", check=False)
    assert attempt.returncode != 0
    assert "Read-only file system" in attempt.stderr


def test_the_start_up_log_names_the_database_on_the_volume(server: Container) -> None:
    assert "sqlite:////data/docserver.db" in server.logs()


def test_the_labels_carry_the_version_and_the_source() -> None:
    [inspected] = json.loads(podman("image", "inspect", IMAGE).stdout)
    labels = inspected["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.source"]
    assert inspected["Config"]["User"] == "10001:10001"


def test_sigterm_drains_and_exits_0_within_the_shutdown_timeout(volume: str) -> None:
    container = start(volume)
    try:
        started = time.monotonic()
        podman("kill", "--signal", "TERM", container.name)
        podman("wait", container.name)
        elapsed = time.monotonic() - started
        state = json.loads(podman("inspect", container.name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, container.logs()
        assert elapsed < SHUTDOWN_TIMEOUT + 5
        assert '"draining"' in container.logs()
    finally:
        podman("rm", "--force", container.name, check=False)
