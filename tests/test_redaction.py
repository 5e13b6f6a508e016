"""Secrets never reach a log line: the Redactor alone, the pipeline in process, and canaries end to end.

The end-to-end run gives a real `docserver serve` canary secrets (embedding
API key, metrics and profiling tokens, a password in the embedding URL),
sends canaries of its own (Authorization, Cookie, `?token=`, wrong tokens),
drives the failure paths (every embedding call is refused with 401), and
then looks for every canary in everything that came out: the server's
stdout and stderr, every response body and header, and /metrics.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from docserver.observability.logging import get_logger
from docserver.observability.redaction import MASK, Redactor
from support.docserver_process import docserver_env, start_docserver
from support.embedding_server_fixture import start_embedding_server
from test_logging import (
    CapturedLogs,
    configure_fixture,  # noqa: F401 (the `configure` fixture)
    tool_call_request,
)

# --- the Redactor ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Authorization: Bearer abc.DEF-123_xyz", f"Authorization: Bearer {MASK}", id="bearer"),
        pytest.param("sent BEARER abc.DEF-123_xyz upstream", f"sent BEARER {MASK} upstream", id="bearer-any-case"),
        pytest.param("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {MASK}", id="basic"),
        pytest.param(
            "connect postgresql://app:hunter2@db:5432/docs failed",
            f"connect postgresql://app:{MASK}@db:5432/docs failed",
            id="url-password",
        ),
        pytest.param(
            "GET /search?q=tls&token=abc123&page=2", f"GET /search?q=tls&token={MASK}&page=2", id="query-token"
        ),
        pytest.param("https://h/v1?api_key=k-999#frag", f"https://h/v1?api_key={MASK}#frag", id="query-api-key"),
        pytest.param("/cb?access_token=zz9&sig=ab12", f"/cb?access_token={MASK}&sig={MASK}", id="query-several"),
        pytest.param("key was sk-proj-AbCdEf0123456789", f"key was {MASK}", id="sk-key"),
    ],
)
def test_credentials_in_text_are_masked(text: str, expected: str) -> None:
    assert Redactor().redact_text(text) == expected


def test_a_configured_secret_is_masked_wherever_it_appears() -> None:
    redactor = Redactor(["s3cr3t-value"])

    assert redactor.redact_text("prefix-s3cr3t-value-suffix and s3cr3t-value") == f"prefix-{MASK}-suffix and {MASK}"


def test_a_configured_secret_with_regex_characters_is_masked_literally() -> None:
    secret = "p@ss.w*rd+(1)?"

    assert Redactor([secret]).redact_text(f"login with {secret} now") == f"login with {MASK} now"
    assert Redactor([secret]).redact_text("login with pXss.wwrd+1 now") == "login with pXss.wwrd+1 now"


def test_the_longer_of_two_overlapping_secrets_is_masked_whole() -> None:
    redactor = Redactor(["abcd", "abcdefgh"])

    assert redactor.redact_text("x abcdefgh y abcd") == f"x {MASK} y {MASK}"


def test_secrets_shorter_than_four_characters_are_ignored() -> None:
    # Masking every "a" in every line would destroy the logs and protect nothing.
    assert Redactor(["a", ""]).redact_text("a banana") == "a banana"


def test_text_without_credentials_is_returned_unchanged() -> None:
    text = "search_completed in 3.2 ms: 5 hits for source corpus"

    assert Redactor(["s3cr3t-value"]).redact_text(text) is text


@pytest.mark.parametrize(
    "key",
    [
        "authorization",
        "Authorization",
        "proxy-authorization",
        "cookie",
        "Set-Cookie",
        "x-api-key",
        "api_key",
        "apikey",
        "token",
        "refresh_token",
        "db_password",
        "password",
        "client_secret",
        "dsn",
        "database_url",
    ],
)
def test_the_value_of_a_secret_named_key_is_masked_whatever_it_holds(key: str) -> None:
    assert Redactor().redact_mapping({key: "harmless-looking-value"}) == {key: MASK}


@pytest.mark.parametrize("key", ["prompt_tokens", "max_tokens", "author", "keyword", "tokenizer", "secretary"])
def test_keys_that_only_look_like_secrets_are_kept(key: str) -> None:
    assert Redactor().redact_mapping({key: 12}) == {key: 12}


def test_nested_dicts_and_lists_are_redacted() -> None:
    redactor = Redactor(["conf-secret-1"])
    event = {
        "request": {
            "headers": [{"name": "Authorization", "value": "Bearer tok.en-1234"}, {"cookie": "sid=1"}],
            "url": "https://u:pw@host/x?token=t0k3n",
        },
        "attempts": ({"note": "used conf-secret-1"}, 3),
    }

    redacted = redactor.redact_mapping(event)

    assert redacted == {
        "request": {
            "headers": [{"name": "Authorization", "value": f"Bearer {MASK}"}, {"cookie": MASK}],
            "url": f"https://u:{MASK}@host/x?token={MASK}",
        },
        "attempts": [{"note": f"used {MASK}"}, 3],
    }


# --- the pipeline, in process --------------------------------------------------------------

SECRET = "Zq8vLk3pWm7tRx2nB4cY"


def test_structlog_fields_and_the_message_are_redacted(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure(secrets=[SECRET])

    get_logger("docserver.test").warning(
        f"retrying with {SECRET}", api_key=SECRET, headers={"Authorization": "Bearer abc.def.ghi"}
    )

    raw = logs.raw()
    assert SECRET.encode() not in raw and b"abc.def.ghi" not in raw
    [line] = logs.lines()
    assert line["api_key"] == MASK and line["headers"] == {"Authorization": MASK}


def test_stdlib_records_and_their_extras_are_redacted(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure(secrets=[SECRET])

    logging.getLogger("httpx").warning(
        "HTTP Request: POST %s failed", "https://user:pw-123@api.example/v1?api_key=k-1", extra={"token": SECRET}
    )

    raw = logs.raw()
    assert SECRET.encode() not in raw and b"pw-123" not in raw and b"k-1" not in raw
    [line] = logs.lines()
    assert line["token"] == MASK


def _fail_holding(value: str) -> None:
    payload = value  # a local of the failing frame, as in any traceback with locals
    raise RuntimeError(f"failed after {len(payload)} bytes")


def test_a_secret_held_in_a_failing_frames_locals_is_masked(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure(secrets=[SECRET])

    try:
        _fail_holding(SECRET)
    except RuntimeError:
        get_logger("docserver.test").exception("upload_failed")

    assert SECRET.encode() not in logs.raw()
    assert logs.lines()[0]["exception"][0]["exc_type"] == "RuntimeError"


def test_no_part_of_a_secret_in_a_long_local_reaches_the_log(configure: Callable[..., CapturedLogs]) -> None:
    logs = configure(secrets=[SECRET])

    try:
        _fail_holding("x" * 70 + SECRET)
    except RuntimeError:
        get_logger("docserver.test").exception("upload_failed")

    raw = logs.raw().decode()
    leaked = [SECRET[start : start + 6] for start in range(len(SECRET) - 5) if SECRET[start : start + 6] in raw]
    assert leaked == []


# --- canaries, end to end -------------------------------------------------------------------

EMBEDDING_API_KEY = "sk-canary-embed-123456"
METRICS_TOKEN = "canary-metrics-token-789"
PROFILING_TOKEN = "canary-pprof-token-456"
URL_PASSWORD = "canary-url-password-555"
HEADER_TOKEN = "canary-header-token-000"
COOKIE = "canary-cookie-222"
QUERY_TOKEN = "canary-query-token-111"
QUERY_KEY = "canary-query-key-333"
WRONG_METRICS_TOKEN = "canary-wrong-metrics-444"
WRONG_PPROF_TOKEN = "canary-wrong-pprof-666"
WRONG_PPROF_PASSWORD = "canary-wrong-pprof-777"
CANARIES = [
    EMBEDDING_API_KEY,
    METRICS_TOKEN,
    PROFILING_TOKEN,
    URL_PASSWORD,
    HEADER_TOKEN,
    COOKIE,
    QUERY_TOKEN,
    QUERY_KEY,
    WRONG_METRICS_TOKEN,
    WRONG_PPROF_TOKEN,
    WRONG_PPROF_PASSWORD,
]
CLIENT_SECRETS = {"Authorization": f"Bearer {HEADER_TOKEN}", "Cookie": f"session={COOKIE}; theme=dark"}


@dataclass
class CanaryRun:
    logs: str = ""
    responses: dict[str, httpx.Response] = field(default_factory=dict)

    def returned(self) -> str:
        """Everything the client got back: status lines aside, every header and body."""
        parts = []
        for response in self.responses.values():
            parts += [f"{name}: {value}" for name, value in response.headers.multi_items()]
            parts.append(response.text)
        return "\n".join(parts)


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"pprof:{password}".encode()).decode()


def _drive(server_url: str, mcp_url: str, run: CanaryRun) -> None:
    with httpx.Client(timeout=30) as http:

        def send(name: str, method: str, url: str, **kwargs: Any) -> None:
            run.responses[name] = http.request(method, url, **kwargs)

        send("healthz", "GET", f"{server_url}/healthz?token={QUERY_TOKEN}", headers=CLIENT_SECRETS)
        send(
            "not-found", "GET", f"{server_url}/no/such?token={QUERY_TOKEN}&api_key={QUERY_KEY}", headers=CLIENT_SECRETS
        )
        send("readyz", "GET", f"{server_url}/readyz", headers=CLIENT_SECRETS)
        for tool, arguments in (("search_docs", {"query": "rotate access tokens"}), ("list_sources", {})):
            headers, body = tool_call_request(tool, arguments)
            send(tool, "POST", f"{mcp_url}?token={QUERY_TOKEN}", headers={**headers, **CLIENT_SECRETS}, content=body)
        send(
            "metrics-wrong", "GET", f"{server_url}/metrics", headers={"Authorization": f"Bearer {WRONG_METRICS_TOKEN}"}
        )
        send("metrics", "GET", f"{server_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        profile = f"{server_url}/debug/pprof/profile?seconds=1"
        send("pprof-wrong-bearer", "GET", profile, headers={"Authorization": f"Bearer {WRONG_PPROF_TOKEN}"})
        send("pprof-wrong-basic", "GET", profile, headers={"Authorization": _basic(WRONG_PPROF_PASSWORD)})
        send("pprof-index", "GET", f"{server_url}/debug/pprof/", headers={"Authorization": f"Bearer {PROFILING_TOKEN}"})


@pytest.fixture(scope="module")
def canary_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CanaryRun]:
    workdir = tmp_path_factory.mktemp("canaries")
    run = CanaryRun()
    with start_embedding_server("--api-key", "sk-the-right-key-is-another-one") as (url, _process):
        embedding_url = url.replace("http://", f"http://embed:{URL_PASSWORD}@")
        env = docserver_env(
            workdir / "docserver.db",
            {
                "DOCSERVER_EMBEDDER": "openai",
                "DOCSERVER_EMBEDDING_URL": embedding_url,
                "DOCSERVER_EMBEDDING_MODEL": "test-embed",
                "DOCSERVER_EMBEDDING_DIMENSIONS": "256",  # start without a successful embedding call
                "DOCSERVER_EMBEDDING_API_KEY": EMBEDDING_API_KEY,
                "METRICS_TOKEN": METRICS_TOKEN,
                "ENABLE_PROFILING": "true",
                "PROFILING_TOKEN": PROFILING_TOKEN,
                "LOG_LEVEL": "DEBUG",  # the most a deployment could ever log
                "OTEL_TRACES_EXPORTER": "none",
            },
        )
        log_path = workdir / "serve.log"  # stdout and stderr together
        with start_docserver(env, log_path) as server:
            _drive(server.url, server.mcp_url, run)
        run.logs = log_path.read_text(errors="replace")  # complete: the server has exited
    yield run


@pytest.mark.slow
def test_the_failure_paths_really_ran(canary_run: CanaryRun) -> None:
    responses = canary_run.responses
    search = responses["search_docs"].json()["result"]
    assert search["isError"] is True
    assert "API key" in search["content"][0]["text"]
    assert responses["readyz"].status_code == 503 and "embedder" in responses["readyz"].json()["failing"]
    assert responses["metrics-wrong"].status_code == 401
    assert responses["pprof-wrong-bearer"].status_code == 401
    assert responses["pprof-wrong-basic"].status_code == 401
    assert (responses["metrics"].status_code, responses["pprof-index"].status_code) == (200, 200)
    events = [json.loads(line) for line in canary_run.logs.splitlines() if line.startswith("{")]
    assert any(line["event"] == "tool_call" and line["status"] == "error" for line in events)


@pytest.mark.slow
def test_no_canary_appears_in_any_log_line(canary_run: CanaryRun) -> None:
    assert canary_run.logs.count('"event":"http_request"') >= len(canary_run.responses)

    assert [canary for canary in CANARIES if canary in canary_run.logs] == []


@pytest.mark.slow
def test_no_canary_appears_in_any_response_body_or_header(canary_run: CanaryRun) -> None:
    returned = canary_run.returned()

    assert [canary for canary in CANARIES if canary in returned] == []


@pytest.mark.slow
def test_no_canary_appears_in_the_metrics_output(canary_run: CanaryRun) -> None:
    metrics = canary_run.responses["metrics"].text
    assert "docserver_http_requests_total" in metrics

    assert [canary for canary in CANARIES if canary in metrics] == []
