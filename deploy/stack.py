"""A monitoring stack on loopback, configured from the committed files in deploy/.

Prometheus and Alertmanager run as real processes with the shipped rules,
scrape configuration and routing tree; only what differs per run is filled
in: the target, the token file, the ports, and every Alertmanager receiver
pointed at one local webhook (`WebhookReceiver`), so a page and a ticket can
be told apart by the path they arrive on (`/page`, `/ticket`).

`scripts/local-stack` uses it for a developer's stack; `tests/test_alerts_live.py`
uses it with `scale_rules`, which shortens every window and `for:` of the real
rules so that alerts fire and resolve within seconds.

Needs PyYAML (in the project's virtualenv) and the Debian `prometheus` and
`prometheus-alertmanager` packages.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the `support` package of tests/

# stack.running: start a process, wait until a URL answers, stop it (scripts/local-stack, test_alerts_live.py).
from support.processes import running as running

DEPLOY = Path(__file__).resolve().parent
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULE_FILES = (DEPLOY / "prometheus" / "rules" / "recording.yml", DEPLOY / "prometheus" / "rules" / "alerts.yml")
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"

T = TypeVar("T")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|[smhdwy])")
_RANGE = re.compile(r"\[([0-9smhdwy]+)(:[0-9smhdwy]*)?\]")
_OFFSET = re.compile(r"\boffset\s+([0-9smhdwy]+)")


# --- configuration derived from the committed files ------------------------------


def prometheus_config(
    *,
    target: str,
    alertmanager: str,
    token_file: Path | None,
    rule_files: tuple[Path, ...] = RULE_FILES,
    interval: str | None = None,
) -> str:
    """deploy/prometheus/prometheus.yml with this run's target, token file, rules and Alertmanager."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    if interval is not None:
        config["global"] = {**config.get("global", {}), "scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(path) for path in rule_files]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "docserver"]
    job["static_configs"] = [{"targets": [target]}]
    if token_file is None:
        job.pop("authorization", None)
    else:
        job["authorization"]["credentials_file"] = str(token_file)
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(webhook_url: str, *, fast: bool = False) -> str:
    """deploy/alertmanager/alertmanager.yml with every receiver posting to `webhook_url/<receiver>`.

    The routing tree and inhibition rules are the committed ones. `fast`
    shortens the grouping waits to a second, for tests and demos.
    """
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    names = [receiver["name"] for receiver in config["receivers"]]
    config["receivers"] = [
        {"name": name, "webhook_configs": [{"url": f"{webhook_url}/{name}", "send_resolved": True}]} for name in names
    ]
    if fast:
        _fast_route(config["route"])
    return yaml.safe_dump(config, sort_keys=False)


def _fast_route(route: dict[str, Any]) -> None:
    for key in ("group_wait", "group_interval"):
        if key in route:
            route[key] = "1s"
    for child in route.get("routes", []):
        _fast_route(child)


def seconds(duration: str) -> float:
    """A Prometheus duration (`1h30m`, `5m`, `500ms`) in seconds."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(number + unit for number, unit in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(number) * _UNITS[unit] for number, unit in parts)


def _scaled(duration: str, factor: float, floor: float) -> str:
    return f"{max(round(seconds(duration) / factor), floor):g}s"


def scale_rules(text: str, factor: float, *, window_floor: float = 5, for_floor: float = 5) -> str:
    """The rule file `text` with every range, offset, `for:` and group interval divided by `factor`.

    Windows keep at least `window_floor` seconds (a rate needs a few scrapes
    in its window) and `for:` at least `for_floor`. Names, thresholds, labels
    and annotations stay as they are, so an alert from the scaled rules is the
    one the real rules would send.
    """
    rules = yaml.safe_load(text)

    def scale_range(match: re.Match[str]) -> str:
        step = match.group(2) or ""
        if len(step) > 1:
            step = ":" + _scaled(step[1:], factor, 1)
        return f"[{_scaled(match.group(1), factor, window_floor)}{step}]"

    def scale_offset(match: re.Match[str]) -> str:
        return f"offset {_scaled(match.group(1), factor, 1)}"

    for group in rules["groups"]:
        if "interval" in group:
            group["interval"] = _scaled(group["interval"], factor, 1)
        for rule in group["rules"]:
            rule["expr"] = _OFFSET.sub(scale_offset, _RANGE.sub(scale_range, rule["expr"]))
            if "for" in rule:
                rule["for"] = _scaled(rule["for"], factor, for_floor)
    return yaml.safe_dump(rules, sort_keys=False)


# --- processes ------------------------------------------------------------------


def binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    raise RuntimeError(f"{' / '.join(names)} not found: install Debian's prometheus and prometheus-alertmanager")


def prometheus_command(config: Path, data: Path, port: int) -> list[str]:
    return [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage",
    ]


def alertmanager_command(config: Path, data: Path, port: int) -> list[str]:
    return [
        binary("prometheus-alertmanager", "alertmanager"),
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port on 0.0.0.0:9094
    ]


# --- the webhook every receiver posts to -------------------------------------------------


@dataclass(frozen=True)
class Notification:
    """One alert out of one Alertmanager webhook post."""

    receiver: str  # the path it arrived on: page, ticket
    status: str  # firing, resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    received_at: float  # time.monotonic()

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


@dataclass
class WebhookReceiver:
    """An HTTP server on loopback that records every alert Alertmanager posts to it.

    `wait_for` blocks on a condition variable that each post notifies: no polling.
    """

    echo: Callable[[Notification], None] | None = None
    notifications: list[Notification] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                receiver._record(self.path.strip("/"), body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, receiver: str, body: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._changed:
            for alert in body.get("alerts", []):
                notification = Notification(receiver, alert["status"], alert["labels"], alert["annotations"], now)
                self.notifications.append(notification)
                if self.echo is not None:
                    self.echo(notification)
            self._changed.notify_all()

    def wait_for(self, find: Callable[[list[Notification]], T | None], timeout: float) -> T | None:
        """The first truthy `find(notifications)` within `timeout` seconds, else None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = find(list(self.notifications))
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                self._changed.wait(remaining)
