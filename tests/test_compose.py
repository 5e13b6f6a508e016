"""deploy/compose.yaml wires the image `make image` builds to the provisioning already in deploy/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from docserver import __version__

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
GENERATED_SECRETS = {"metrics-token"}  # written by the operator, see the file's header


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    result: dict[str, Any] = compose["services"]
    return result


def test_it_runs_the_whole_stack(services: dict[str, Any]) -> None:
    expected = {"docserver", "postgres", "redis", "prometheus", "alertmanager", "grafana", "jaeger"}
    assert set(services) == expected


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
