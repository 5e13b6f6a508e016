"""The container image runs as shipped: non-root, read-only root filesystem, database on /data.

`make image-test` (part of `make test`) builds the image and runs these tests
against it; they need podman and the image named by DOCSERVER_IMAGE
(DOCSERVER_PODMAN: the podman command line, e.g. `podman --runtime runc`).
They carry the `image` marker: `make pytest` leaves them to `make image-test`,
and run without DOCSERVER_IMAGE they fail saying so.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from mcp import Client

from docserver import __version__
from support.podman import IMAGE, NO_IMAGE, logs, podman, wait_for_status
from support.processes import free_port

SHUTDOWN_TIMEOUT = 5

pytestmark = [pytest.mark.slow, pytest.mark.image]


@pytest.fixture(autouse=True, scope="module")
def _an_image_is_named() -> None:
    assert IMAGE, NO_IMAGE


@dataclass
class Container:
    name: str
    url: str

    def logs(self) -> str:
        return logs(self.name)


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


@pytest.fixture
def fresh_volume() -> Iterator[str]:
    """An empty named volume: podman fills it from the image's /data (owner 10001, mode 0750) on first use."""
    name = f"docserver-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    try:
        yield name
    finally:
        podman("volume", "rm", "--force", name, check=False)


def start(volume: str, *options: str) -> Container:
    """The image's own entrypoint, read-only, on a free loopback port; returns once /healthz answers."""
    name = f"docserver-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    podman(
        *("run", "--detach", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp"),
        *("-v", f"{volume}:/data", "-e", f"DOCSERVER_SHUTDOWN_TIMEOUT={SHUTDOWN_TIMEOUT}", *options, IMAGE),
        *("serve", "--host", "127.0.0.1", "--port", str(port)),
    )
    container = Container(name, f"http://127.0.0.1:{port}")
    wait_for_status(f"{container.url}/healthz", name)
    return container


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


def refused_start(*options: str) -> str:
    """Start `serve` read-only with `options`; assert it stopped at once with exit 1 and one line; return it."""
    run = podman(
        *("run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp", *options, IMAGE),
        *("serve", "--host", "127.0.0.1", "--port", str(free_port())),
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    [line] = run.stderr.splitlines()
    return line


def test_a_read_only_volume_stops_it_with_one_line(volume: str) -> None:
    line = refused_start("-v", f"{volume}:/data:ro")
    assert (
        line
        == "docserver: error: cannot open database /data/docserver.db: /data is mounted read-only; mount it read-write"
    )


def test_no_volume_on_a_read_only_root_stops_it_with_one_line() -> None:
    # Kubernetes ignores an image's VOLUME: without a volume, /data is part of the read-only root.
    line = refused_start("--image-volume", "ignore")
    assert line == (
        "docserver: error: cannot open database /data/docserver.db: /data is on a read-only file system and no "
        "volume is mounted there; mount a writable volume at /data, or set DOCSERVER_DATABASE_URL"
    )


def test_a_user_the_volume_does_not_belong_to_stops_it_with_one_line(fresh_volume: str) -> None:
    line = refused_start("-v", f"{fresh_volume}:/data", "--user", "12345")
    assert line == (
        "docserver: error: cannot open database /data/docserver.db: /data is not writable by user 12345 "
        "(it belongs to 10001:10001, mode 750); run as UID 10001, or give this user write access"
    )


UNREACHABLE_DATABASE = "postgresql://docserver:s3cret@127.0.0.1:{port}/docserver"


def test_a_one_shot_command_stops_at_once_when_the_database_cannot_be_reached() -> None:
    url = UNREACHABLE_DATABASE.format(port=free_port())
    run = podman(
        "run",
        "--rm",
        "--network",
        "host",
        "--read-only",
        "-e",
        f"DOCSERVER_DATABASE_URL={url}",
        IMAGE,
        "ingest",
        "--sample",
        check=False,
    )
    assert run.returncode == 1
    [line] = run.stderr.splitlines()
    assert line.startswith("docserver: error: cannot connect to the database postgresql://docserver:***@127.0.0.1:")
    assert "s3cret" not in run.stdout + run.stderr


def test_the_server_waits_for_a_database_it_cannot_reach_saying_why(fresh_volume: str) -> None:
    """Not a crash loop: it serves /healthz, /readyz answers 503 naming the database, one warning is logged."""
    url = UNREACHABLE_DATABASE.format(port=free_port())
    container = start(fresh_volume, "-e", f"DOCSERVER_DATABASE_URL={url}")
    try:
        ready = httpx.get(f"{container.url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"].startswith("cannot connect to the database postgresql://docserver:***@")
        assert container.logs().count("store_unavailable") == 1
        assert "s3cret" not in container.logs()
    finally:
        podman("rm", "--force", container.name, check=False)
