"""The kustomize base in deploy/kubernetes, rendered by `kubectl kustomize` and checked object by object.

Core objects are validated against the Kubernetes 1.30 schemas by
kubernetes-validate (offline); the prometheus-operator objects, which it has
no schema for, are checked for the shape the operator reads. kubectl is the
renderer: its absence fails these tests.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from docserver.config import ENVIRONMENT_VARIABLES

ROOT = Path(__file__).parents[1]
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
RULE_FILES = [ROOT / "deploy" / "prometheus" / "rules" / name for name in ("recording.yml", "alerts.yml")]
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_generate", KUSTOMIZE / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl (with kustomize) is missing"
    result = subprocess.run([kubectl, "kustomize", str(KUSTOMIZE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def one(objects: list[dict[str, Any]], kind: str, name: str = "docserver") -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    return found


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return found


def env(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container(objects)["env"]}


def test_generated_files_are_up_to_date() -> None:
    stale = [str(path) for path, text in generator().render().items() if path.read_text() != text]
    assert stale == [], "run python deploy/kubernetes/generate.py and commit the result"


def test_the_prometheus_rule_holds_exactly_the_rule_files_groups(objects: list[dict[str, Any]]) -> None:
    groups = [group for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]]
    assert one(objects, "PrometheusRule")["spec"]["groups"] == groups


def test_the_base_renders_every_object(objects: list[dict[str, Any]]) -> None:
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        ["ConfigMap"] * 5 + ["CronJob", "Deployment", "PodDisruptionBudget", "PrometheusRule", "Secret", "Service"]
        + ["ServiceMonitor"]
    )  # fmt: skip


def test_core_objects_validate_against_kubernetes_1_30(objects: list[dict[str, Any]], tmp_path: Path) -> None:
    validator = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    assert Path(validator).exists(), "kubernetes-validate is missing: pip install -e '.[dev]'"
    core = tmp_path / "core.yaml"
    core.write_text(yaml.safe_dump_all([o for o in objects if o["kind"] not in OPERATOR_KINDS]))
    result = subprocess.run(
        [validator, "-k", "1.30.0", "--strict", str(core)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(objects) - len(OPERATOR_KINDS)


def test_probes_use_healthz_for_liveness_and_readyz_for_readiness(objects: list[dict[str, Any]]) -> None:
    spec = container(objects)
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_grace_period_outlasts_prestop_and_the_shutdown_timeout(objects: list[dict[str, Any]]) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    pre_stop = container(objects)["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown = float(env(objects)["DOCSERVER_SHUTDOWN_TIMEOUT"])
    assert pre_stop > 0
    assert pod["terminationGracePeriodSeconds"] > pre_stop + shutdown


def test_the_pod_runs_unprivileged_on_a_read_only_root(objects: list[dict[str, Any]]) -> None:
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"] for mount in container(objects)["volumeMounts"]}
    assert "/tmp" in mounts  # the one writable place


def test_resources_are_requested_and_memory_limited(objects: list[dict[str, Any]]) -> None:
    resources = container(objects)["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_the_admin_listener_is_the_named_metrics_port(objects: list[dict[str, Any]]) -> None:
    ports = {port["name"]: port["containerPort"] for port in container(objects)["ports"]}
    admin_host, _, admin_port = env(objects)["DOCSERVER_ADMIN_ADDR"].rpartition(":")
    assert admin_host == "0.0.0.0" and int(admin_port) == ports["metrics"]
    assert int(env(objects)["DOCSERVER_PORT"]) == ports["http"]
    service = {port["name"]: port["targetPort"] for port in one(objects, "Service")["spec"]["ports"]}
    assert service == {"http": "http", "metrics": "metrics"}


def test_the_public_host_is_allowed(objects: list[dict[str, Any]]) -> None:
    assert env(objects)["DOCSERVER_HOST"] == "0.0.0.0"
    assert "docserver" in env(objects)["DOCSERVER_ALLOWED_HOSTS"].split(",")


def test_every_environment_variable_is_a_setting(objects: list[dict[str, Any]]) -> None:
    settings = set(ENVIRONMENT_VARIABLES.values())
    secret = one(objects, "Secret", "docserver-secrets")
    names = set(env(objects)) | set(secret["data"])
    helpers = {"POD_NAME", "POD_NAMESPACE", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_TIMEOUT"}
    assert names - helpers <= settings, names - helpers - settings


def test_tokens_and_the_database_url_come_from_the_secret(objects: list[dict[str, Any]]) -> None:
    secret = one(objects, "Secret", "docserver-secrets")
    assert {"METRICS_TOKEN", "PROFILING_TOKEN", "DOCSERVER_DATABASE_URL"} <= set(secret["data"])
    (source,) = container(objects)["envFrom"]
    assert source["secretRef"]["name"] == secret["metadata"]["name"]  # the hashed name kustomize generated
    assert not {"METRICS_TOKEN", "PROFILING_TOKEN", "DOCSERVER_DATABASE_URL"} & set(env(objects))


def test_traces_go_to_the_jaeger_collector_over_otlp(objects: list[dict[str, Any]]) -> None:
    variables = env(objects)
    assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://jaeger-collector.")
    assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4318")
    assert variables["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"


def test_the_service_monitor_scrapes_the_metrics_port_with_the_token(objects: list[dict[str, Any]]) -> None:
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    secret = one(objects, "Secret", "docserver-secrets")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert "release" in monitor["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # The job label comes from this Service label: the rules select job="docserver".
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "docserver"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    credentials = endpoint["authorization"]["credentials"]
    assert credentials["name"] == secret["metadata"]["name"] and credentials["key"] in secret["data"]


def test_the_prometheus_rule_has_the_operator_shape(objects: list[dict[str, Any]]) -> None:
    rule = one(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert "release" in rule["metadata"]["labels"]
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"]
        for item in group["rules"]:
            assert ("record" in item) != ("alert" in item) and isinstance(item["expr"], str)
            assert set(item) <= {"record", "alert", "expr", "for", "labels", "annotations"}


def test_dashboards_ship_in_configmaps_for_the_grafana_sidecar(objects: list[dict[str, Any]]) -> None:
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    shipped = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        shipped.update(config_map["data"])
    assert set(shipped) == {path.name for path in DASHBOARDS.glob("*.json")}
    for name, text in shipped.items():
        assert json.loads(text) == json.loads((DASHBOARDS / name).read_text())


def test_the_disruption_budget_and_selectors_match_the_pods(objects: list[dict[str, Any]]) -> None:
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind in ("PodDisruptionBudget", "Deployment"):
        assert one(objects, kind)["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert one(objects, "Service")["spec"]["selector"].items() <= pod_labels.items()


def test_a_cronjob_refreshes_the_sources_with_the_deployments_image_and_embedder(objects: list[dict[str, Any]]) -> None:
    job = one(objects, "CronJob")["spec"]
    pod = job["jobTemplate"]["spec"]["template"]["spec"]
    [refresh] = pod["containers"]
    served = env(objects)
    refreshing = {item["name"]: item.get("value", "") for item in refresh["env"]}
    assert refresh["command"] == ["docserver", "refresh"]
    assert refresh["image"] == container(objects)["image"]
    embedder = ("DOCSERVER_EMBEDDER", "DOCSERVER_EMBEDDING_URL", "DOCSERVER_EMBEDDING_MODEL")
    assert {name: refreshing[name] for name in embedder} == {name: served[name] for name in embedder}
    assert refresh["envFrom"] == container(objects)["envFrom"]  # the same database and API key
    assert job["concurrencyPolicy"] == "Forbid"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert refresh["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"] for mount in refresh["volumeMounts"]}
    assert refreshing["XDG_DATA_HOME"] in mounts  # the git cache is writable
