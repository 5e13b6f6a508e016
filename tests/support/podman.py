"""The built image and the podman command line that runs it (tests/test_image.py, tests/test_kube_play.py).

`make image-test` builds the image and names it in DOCSERVER_IMAGE;
DOCSERVER_PODMAN is the podman command line (e.g. `podman --runtime runc`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time

import httpx

IMAGE = os.environ.get("DOCSERVER_IMAGE", "")
PODMAN = shlex.split(os.environ.get("DOCSERVER_PODMAN", "podman"))
NO_IMAGE = "no image named: run `make image-test`, or set DOCSERVER_IMAGE to a built image"


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=check)


def logs(container: str) -> str:
    result = podman("logs", container, check=False)
    return result.stdout + result.stderr


def wait_for_status(url: str, container: str, status: int = 200, within: float = 60) -> None:
    """Return once GET `url` answers `status`; fail with the container's log when it never does."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == status:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # polling a port that is not open yet
    raise AssertionError(f"{url} never answered {status}:\n{logs(container)}")
