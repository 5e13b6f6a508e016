"""deploy/kubernetes's Deployment, as `kubectl kustomize` renders it, played by `podman kube play`.

The pod runs the image `make image` builds (the manifest's `docserver:<version>`
is that local image), on the host network, against a real PostgreSQL with
pgvector and the real Redis on loopback. The CronJob's container adds the
sample docs first (`docserver ingest --sample` in place of its command: sources
are added once, as the CronJob's header says; its own `docserver refresh` runs
as written in a test), then the tests check that the probes' paths answer, that a real
Prometheus scrapes `/metrics` with the shipped scrape configuration, that an MCP
client searches, and that SIGTERM drains.

Played as rendered, except what podman or this machine cannot do (each is in
`adapt`, and docs/deployment.md lists them):

- The Secret's values. The base ships placeholders for an overlay to replace;
  here they are the test PostgreSQL's URL, fresh tokens, the embedding server's
  key, and the Redis URL with a key prefix of this test's own. podman 4.3 stores
  a played `kind: Secret` in a form its own `envFrom` cannot read, so the Secret
  is created with `podman secret create`, under its rendered name (plus the suffix below), holding the
  object's `data` (the JSON podman reads).
- One replica, free ports, no `ports:` list. There is no bridge network here, so
  the pod shares the host's network: two replicas would contend for one port,
  and 8080/9090 may be taken. `DOCSERVER_PORT` and `DOCSERVER_ADMIN_ADDR` get free
  ports, and the port list goes (podman refuses port mappings on the host
  network); the probes' named ports are resolved to those ports by the test.
- `POD_NAMESPACE`: podman cannot fill `metadata.namespace` from a fieldRef; it
  gets `default`, what Kubernetes gives the base applied without a namespace.
- Names: the Deployment and its Secret get this run's suffix, so two runs on one
  machine (or a run beside a pod left by a killed one) do not replace each other's.
- `DOCSERVER_EMBEDDING_URL`: api.openai.com cannot be reached from here. An
  OpenAI-compatible embedding server on loopback answers instead, and requires
  the key the Secret carries.

podman does not run the probes (it turns the liveness probe into a `curl`
healthcheck that needs systemd timers; the image has no curl and CI no systemd),
so the test requests each probe's path on its port, as the kubelet would; nor
the preStop hook: `podman stop` sends SIGTERM at once.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import redis
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from support.embedding_server_fixture import start_embedding_server
from support.podman import IMAGE, NO_IMAGE, logs, podman, wait_for_status
from support.postgres_tcp import postgres_on_loopback
from support.processes import free_port, running
from support.redis_server import redis_url

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
sys.path.insert(0, str(DEPLOY))
import stack  # noqa: E402  (deploy/stack.py: Prometheus configured from the committed files)

pytestmark = [pytest.mark.slow, pytest.mark.image]


def rendered() -> dict[str, dict[str, Any]]:
    """The kustomize base's objects by kind (one of each kind is rendered)."""
    output = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True, check=True
    ).stdout
    return {doc["kind"]: doc for doc in yaml.safe_load_all(output) if doc}


@dataclass
class Ports:
    http: int
    metrics: int

    def of(self, name: str) -> int:
        return {"http": self.http, "metrics": self.metrics}[name]


def container_of(spec: dict[str, Any]) -> dict[str, Any]:
    [container] = spec["template"]["spec"]["containers"] if "template" in spec else spec["containers"]
    result: dict[str, Any] = container
    return result


def set_env(container: dict[str, Any], name: str, value: str) -> None:
    [variable] = [variable for variable in container["env"] if variable["name"] == name]
    variable.pop("valueFrom", None)
    variable["value"] = value


def adapt(deployment: dict[str, Any], ports: Ports, embedding_url: str, secret: str, run: str) -> dict[str, Any]:
    """The Deployment with only what podman or this machine cannot do changed (see the module's docstring)."""
    deployment["spec"]["replicas"] = 1
    deployment["metadata"]["name"] += f"-{run}"
    container = container_of(deployment["spec"])
    for source in container["envFrom"]:
        if source.get("secretRef", {}).get("name") == secret:
            source["secretRef"]["name"] = f"{secret}-{run}"
    container.pop("ports")
    set_env(container, "DOCSERVER_PORT", str(ports.http))
    set_env(container, "DOCSERVER_ADMIN_ADDR", f"0.0.0.0:{ports.metrics}")
    set_env(container, "POD_NAMESPACE", "default")
    set_env(container, "DOCSERVER_EMBEDDING_URL", embedding_url)
    return deployment


def run_job_container(cronjob: dict[str, Any], values: dict[str, str], embedding_url: str, *command: str) -> None:
    """The CronJob's container as its spec says (user, env, read-only root, emptyDirs), running `command`."""
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = container_of(spec)
    set_env(container, "DOCSERVER_EMBEDDING_URL", embedding_url)
    env = {variable["name"]: variable["value"] for variable in container["env"]} | values
    user = spec["securityContext"]
    run = podman(
        *("run", "--rm", "--network", "host", "--read-only", "--user", f"{user['runAsUser']}:{user['runAsGroup']}"),
        *("--cap-drop", "all", "--security-opt", "no-new-privileges"),
        *(f"--tmpfs={mount['mountPath']}" for mount in container["volumeMounts"]),
        *(f"--env={name}={value}" for name, value in env.items()),
        *("--entrypoint", command[0], container["image"], *command[1:]),
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, f"{' '.join(command)}: {run.stdout}{run.stderr}"


@dataclass
class Pod:
    container: str
    ports: Ports
    probes: dict[str, dict[str, Any]]
    values: dict[str, str]  # the Secret's
    embedding_url: str
    grace_period: int

    def probe_url(self, probe: str) -> str:
        get = self.probes[probe]["httpGet"]
        return f"http://127.0.0.1:{self.ports.of(get['port'])}{get['path']}"

    def wait_ready(self) -> None:
        wait_for_status(self.probe_url("readinessProbe"), self.container)


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    assert IMAGE, NO_IMAGE
    objects = rendered()
    tmp = tmp_path_factory.mktemp("kube-play")
    ports = Ports(free_port(), free_port())
    api_key = secrets.token_hex(16)
    run = uuid.uuid4().hex[:8]
    prefix = f"kube-play-{run}:"
    with (
        postgres_on_loopback("kube_play") as database_url,
        start_embedding_server("--api-key", api_key) as (embedding_url, _),
    ):
        values = {
            "METRICS_TOKEN": secrets.token_hex(16),
            "PROFILING_TOKEN": secrets.token_hex(16),
            "DOCSERVER_EMBEDDING_API_KEY": api_key,
            "DOCSERVER_DATABASE_URL": database_url,
            "DOCSERVER_REDIS_URL": redis_url(),
            "DOCSERVER_REDIS_KEY_PREFIX": prefix,
        }
        rendered_secret = objects["Secret"]["metadata"]["name"]
        secret = f"{rendered_secret}-{run}"
        assert set(objects["Secret"]["data"]) <= set(values), "the test must give every value the base expects"
        data = tmp / "secret.json"
        data.write_text(json.dumps({key: base64.b64encode(value.encode()).decode() for key, value in values.items()}))
        podman("secret", "create", secret, str(data))
        deployment = adapt(objects["Deployment"], ports, embedding_url, rendered_secret, run)
        manifest = tmp / "deployment.yaml"
        manifest.write_text(yaml.safe_dump(deployment))
        try:
            run_job_container(objects["CronJob"], values, embedding_url, "docserver", "ingest", "--sample")
            podman("kube", "play", "--replace", "--network", "host", str(manifest))
            spec = deployment["spec"]["template"]["spec"]
            container = container_of(deployment["spec"])
            pod = Pod(
                container=f"{deployment['metadata']['name']}-pod-0-{container['name']}",
                ports=ports,
                probes={name: container[name] for name in ("startupProbe", "livenessProbe", "readinessProbe")},
                values=values,
                embedding_url=embedding_url,
                grace_period=spec["terminationGracePeriodSeconds"],
            )
            pod.wait_ready()
            yield pod
        finally:
            podman("kube", "down", str(manifest), check=False)
            podman("secret", "rm", secret, check=False)
            shared = redis.Redis.from_url(redis_url())
            for key in shared.scan_iter(f"{prefix}*"):
                shared.delete(key)


def test_the_manifests_run_the_image_make_image_builds() -> None:
    objects = rendered()
    images = {container_of(objects["Deployment"]["spec"])["image"]}
    images.add(container_of(objects["CronJob"]["spec"]["jobTemplate"]["spec"])["image"])
    assert images == {IMAGE}


@pytest.mark.parametrize("probe", ["startupProbe", "livenessProbe", "readinessProbe"])
def test_each_probe_path_answers_200(pod: Pod, probe: str) -> None:
    timeout = pod.probes[probe].get("timeoutSeconds", 1)
    assert httpx.get(pod.probe_url(probe), timeout=timeout).status_code == 200


async def search(pod: Pod, query: str) -> dict[str, Any]:
    """search_docs over MCP, addressed by the in-cluster Service name the Deployment allows."""
    headers = {"Host": f"docserver:{pod.ports.http}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(f"http://127.0.0.1:{pod.ports.http}/mcp", http_client=http)) as client,  # type: ignore[arg-type]
    ):
        result = await client.call_tool("search_docs", {"query": query})
    assert result.structured_content is not None, result
    return result.structured_content


async def test_an_mcp_client_searches_what_the_cronjob_container_ingested(pod: Pod) -> None:
    found = await search(pod, "how do I set the database URL")
    assert found["results"]
    assert {hit["source"] for hit in found["results"]} == {"docserver-docs"}


async def test_a_search_fills_the_shared_cache_in_redis(pod: Pod) -> None:
    await search(pod, "which port does the admin listener use")
    assert list(redis.Redis.from_url(redis_url()).scan_iter(f"{pod.values['DOCSERVER_REDIS_KEY_PREFIX']}*"))


def test_the_cronjob_command_as_written_refreshes_the_sources(pod: Pod) -> None:
    cronjob = rendered()["CronJob"]
    command = container_of(cronjob["spec"]["jobTemplate"]["spec"])["command"]
    run_job_container(cronjob, pod.values, pod.embedding_url, *command)


def test_prometheus_scrapes_metrics_with_the_shipped_configuration(pod: Pod, tmp_path: Path) -> None:
    token = tmp_path / "metrics-token"
    token.write_text(pod.values["METRICS_TOKEN"])
    config = tmp_path / "prometheus.yml"
    target = f"127.0.0.1:{pod.ports.metrics}"
    config.write_text(
        stack.prometheus_config(
            target=target, alertmanager="127.0.0.1:9", token_file=token, rule_files=(), interval="1s"
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        stack.prometheus_command(config, tmp_path / "data", port), tmp_path / "prometheus.log", f"{url}/-/ready"
    ):
        deadline = time.monotonic() + 30
        while (up := query(url, 'up{job="docserver"}')) != ["1"]:
            assert time.monotonic() < deadline, f"never scraped: {up}"
            time.sleep(0.2)  # polling Prometheus for its next scrape
        assert query(url, "docserver_build_info") == ["1"]


def query(url: str, expr: str) -> list[str]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}).json()
    return [sample["value"][1] for sample in body["data"]["result"]]


def test_sigterm_drains_and_exits_0_within_the_grace_period(pod: Pod) -> None:
    try:
        started = time.monotonic()
        podman("stop", "--time", str(pod.grace_period), pod.container, timeout=pod.grace_period + 30)
        elapsed = time.monotonic() - started
        state = json.loads(podman("inspect", pod.container).stdout)[0]["State"]
        assert state["ExitCode"] == 0, logs(pod.container)
        assert '"event":"draining"' in logs(pod.container)
        assert elapsed < pod.grace_period
    finally:
        podman("start", pod.container)
        pod.wait_ready()
