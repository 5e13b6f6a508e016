"""Static API tokens: the token file, constant-time matching, bearer parsing, and /mcp behind them.

In process through the app's HTTP interface and the official MCP client;
the log lines are checked on a real `docserver serve` (tests/test_auth_logs.py).
"""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from docserver.access import tokens as tokens_module
from docserver.access.bearer import MAX_AUTHORIZATION_BYTES, bearer_token, challenge
from docserver.access.scopes import readable_sources
from docserver.access.tokens import load_tokens, new_token, token_entry
from docserver.config import Settings
from docserver.config.admission import AdmissionSettings
from docserver.config.auth import AuthSettings
from docserver.errors import ConfigError
from docserver.ingest.pipeline import ingest
from docserver.observability.metrics import Metrics
from docserver.runtime import Runtime
from support.inprocess import current_request, http_client, mcp_client, new_metrics, serve_in_process

READER = new_token()
SCOPED = new_token()


def write_tokens(folder: Path, *entries: str) -> Path:
    path = folder / "tokens.toml"
    path.write_text("\n".join(entries), encoding="utf-8")
    return path


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens(
        tmp_path,
        token_entry("ci-bot", READER, ["docs:read"]),
        token_entry("team-a", SCOPED, ["docs:read:corpus"]),
    )


# --- the file -------------------------------------------------------------------------------


def test_the_file_holds_names_scopes_and_hashes_never_the_token(tokens_file: Path) -> None:
    text = tokens_file.read_text()
    assert READER not in text and SCOPED not in text
    table = load_tokens(tokens_file)
    assert len(table) == 2
    reader = table.match(READER.encode())
    assert reader is not None and (reader.name, reader.sources) == ("ci-bot", None)
    scoped = table.match(SCOPED.encode())
    assert scoped is not None and scoped.sources == frozenset({"corpus"})
    assert table.match(b"dsk_not-a-token") is None


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('[[tokens]]\nname = "a"\nsha256 = "abc"\nscopes = ["docs:read"]\n', "64 hex digits"),
        (token_entry("a", "t", ["docs:read"]).replace("docs:read", "docs:write"), "unknown scope 'docs:write'"),
        (token_entry("a", "t", ["docs:read"]) + token_entry("a", "u", ["docs:read"]), "names must be unique"),
        ('[[tokens]]\nname = "a"\nsha256 = "' + "0" * 64 + '"\nscopes = []\n', "non-empty list"),
        ("tokens = 3", "no [[tokens]]"),
        ("[[tokens]\n", "cannot read it"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_setting(tmp_path: Path, content: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_tokens(write_tokens(tmp_path, content))
    message = str(raised.value)
    assert message.startswith("DOCSERVER_API_TOKENS_FILE") and says in message and "\n" not in message


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_tokens(tmp_path / "absent.toml")


@pytest.mark.parametrize("presented", [READER, SCOPED, "dsk_wrong", ""], ids=["first", "second", "wrong", "empty"])
def test_every_entry_is_compared_in_constant_time_whether_or_not_one_matches(
    tokens_file: Path, presented: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = load_tokens(tokens_file)
    compared: list[tuple[int, int]] = []
    original = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return original(a, b)

    monkeypatch.setattr(tokens_module.hmac, "compare_digest", compare)
    table.match(presented.encode())
    assert compared == [(32, 32), (32, 32)]  # every entry, digests of fixed length: no early exit


def test_scopes_grant_all_sources_or_the_named_ones() -> None:
    assert readable_sources(["docs:read"]) is None
    assert readable_sources(["docs:admin"]) is None
    assert readable_sources(["docs:read:a", "docs:read:b"]) == frozenset({"a", "b"})


# --- the header -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], (None, "missing")),
        ([(b"authorization", b"Bearer abc.DEF-_~+/=")], (b"abc.DEF-_~+/=", None)),
        ([(b"authorization", b"bearer  abc ")], (b"abc", None)),
        ([(b"authorization", b"Basic dTpw")], (None, "malformed")),
        ([(b"authorization", b"Bearer")], (None, "malformed")),
        ([(b"authorization", b"Bearer a b")], (None, "malformed")),
        ([(b"authorization", b"Bearer \xff")], (None, "malformed")),
        ([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")], (None, "malformed")),
        ([(b"authorization", b"Bearer " + b"a" * MAX_AUTHORIZATION_BYTES)], (None, "malformed")),
    ],
)
def test_the_bearer_header_is_parsed_strictly(
    headers: list[tuple[bytes, bytes]], expected: tuple[bytes | None, str | None]
) -> None:
    assert bearer_token(headers) == expected


def test_challenges_follow_rfc_6750() -> None:
    assert challenge("missing") == (401, b'Bearer realm="docserver"')
    assert challenge("unknown_token") == (401, b'Bearer realm="docserver", error="invalid_token"')
    assert challenge("insufficient_scope") == (
        403,
        b'Bearer realm="docserver", error="insufficient_scope", scope="docs:read"',
    )


# --- /mcp behind tokens -----------------------------------------------------------------------


def secured(settings: Settings, tokens_file: Path, **admission: object) -> Settings:
    return settings.model_copy(
        update={"auth": AuthSettings(api_tokens_file=tokens_file), "admission": AdmissionSettings(**admission)}
    )


@pytest.fixture
async def indexed(settings: Settings, runtime: Runtime, corpus: Path) -> tuple[Runtime, Metrics]:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    metrics = new_metrics()
    return Runtime(settings, runtime.store, runtime.embedder, metrics), metrics


def checked(metrics: Metrics) -> dict[str, float | None]:
    """docserver_auth_requests_total by result."""
    sample = metrics.registry.get_sample_value
    return {result: sample("docserver_auth_requests_total", {"result": result}) for result in ("ok", "refused")}


def failures(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("docserver_auth_failures_total", {"endpoint": "mcp", "reason": reason})
    assert value is not None
    return value


@pytest.mark.parametrize(
    ("authorization", "status", "reason"),
    [
        (None, 401, "missing"),
        ("Bearer dsk_guessed", 401, "unknown_token"),
        ("Basic Y2k6Ym90", 401, "malformed"),
        ("Bearer " + "x" * 10_000, 401, "malformed"),
    ],
)
async def test_mcp_refuses_a_request_without_a_valid_token(
    settings: Settings,
    tokens_file: Path,
    indexed: tuple[Runtime, Metrics],
    authorization: str | None,
    status: int,
    reason: str,
) -> None:
    runtime, metrics = indexed
    settings = secured(settings, tokens_file)
    headers, body = current_request("tools/call", {"name": "list_sources", "arguments": {}}, name="list_sources")
    if authorization is not None:
        headers["Authorization"] = authorization
    async with serve_in_process(settings, runtime, metrics) as app, http_client(app, headers) as http:
        refused = await http.post("/mcp", content=body)
        health = await http.get("/healthz")

    assert refused.status_code == status
    assert refused.headers["www-authenticate"].startswith('Bearer realm="docserver"')
    assert refused.json()["correlation_id"] == refused.headers["x-correlation-id"]
    assert failures(metrics, reason) == 1
    assert checked(metrics) == {"ok": 0, "refused": 1}
    assert health.status_code == 200


async def test_the_official_client_with_a_token_is_served(
    settings: Settings, tokens_file: Path, indexed: tuple[Runtime, Metrics]
) -> None:
    runtime, metrics = indexed
    settings = secured(settings, tokens_file)
    headers = {"Authorization": f"Bearer {READER}"}
    async with serve_in_process(settings, runtime, metrics) as app, mcp_client(app, headers=headers) as client:
        result = await client.call_tool("list_sources", {})
    assert not result.is_error
    assert [source["name"] for source in result.structured_content["sources"]] == ["corpus"]
    assert sum(failures(metrics, reason) for reason in ("missing", "unknown_token", "malformed")) == 0
    counts = checked(metrics)
    assert counts["refused"] == 0 and (counts["ok"] or 0) >= 2  # the client's discovery, then the call


async def test_the_handshake_era_client_with_a_token_is_served(
    settings: Settings, tokens_file: Path, indexed: tuple[Runtime, Metrics]
) -> None:
    runtime, metrics = indexed
    settings = secured(settings, tokens_file)
    headers = {"Authorization": f"Bearer {READER}"}
    async with (
        serve_in_process(settings, runtime, metrics) as app,
        mcp_client(app, mode="legacy", headers=headers) as client,
    ):
        result = await client.call_tool("search_docs", {"query": "install"})
    assert not result.is_error


async def test_the_rate_limit_counts_per_principal_not_per_address(
    settings: Settings, tokens_file: Path, indexed: tuple[Runtime, Metrics]
) -> None:
    runtime, metrics = indexed
    settings = secured(settings, tokens_file, rate_limit_per_second=0.1, rate_limit_burst=1)
    headers, body = current_request("tools/call", {"name": "list_sources", "arguments": {}}, name="list_sources")
    async with serve_in_process(settings, runtime, metrics) as app, http_client(app, headers) as http:
        statuses = [
            (await http.post("/mcp", content=body, headers={"Authorization": f"Bearer {token}"})).status_code
            for token in (READER, READER, SCOPED)
        ]
    assert statuses == [200, 429, 200]  # same address, two principals, two buckets


def test_auth_failure_series_exist_from_the_start() -> None:
    metrics = new_metrics()
    for endpoint, reason in [
        ("mcp", "missing"),
        ("mcp", "unknown_key"),
        ("metrics", "missing"),
        ("pprof", "malformed"),
    ]:
        value = metrics.registry.get_sample_value(
            "docserver_auth_failures_total", {"endpoint": endpoint, "reason": reason}
        )
        assert value == 0
