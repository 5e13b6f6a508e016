"""What an OAuth caller may see and what is said about it: per-source scopes, static tokens beside, logs, settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from docserver.access.jwt import granted_scopes, key_fits
from docserver.access.metadata import metadata_url
from docserver.access.tokens import new_token, token_entry
from docserver.config import ConfigError, Settings, load_settings
from docserver.ingest.pipeline import ingest
from docserver.observability.metrics import Metrics
from docserver.runtime import Runtime
from support.captured_logs import capture_events
from support.idp import IdentityProvider
from support.inprocess import new_metrics
from support.oauth import Caller, docserver, names

STATIC = new_token()


@pytest.fixture
async def two_sources(settings: Settings, runtime: Runtime, corpus: Path) -> tuple[Runtime, Metrics]:
    await ingest(runtime.store, runtime.embedder, [corpus], "team-a")
    await ingest(runtime.store, runtime.embedder, [corpus], "team-b")
    metrics = new_metrics()
    return Runtime(settings, runtime.store, runtime.embedder, metrics), metrics


async def test_a_token_scoped_to_one_source_sees_only_that_source(
    settings: Settings, two_sources: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    async with docserver(settings, two_sources, idp) as url:
        caller = Caller(url)
        everything = idp.mint(sub="admin", scope="docs:read")
        theirs = (await caller.call(everything, "search_docs", {"query": "install", "source": "team-b"}))["results"]
        team_a = idp.mint(key="ec", sub="team-a-bot", scp=["docs:read:team-a", "openid"])
        listed = await caller.call(team_a, "list_sources")
        searched = await caller.call(team_a, "search_docs", {"query": "install", "limit": 10})
        other = await caller.call(team_a, "get_document", {"id": theirs[0]["document_id"]})
        missing = await caller.call(team_a, "get_document", {"id": 999_999})

    assert names(listed) == ["team-a"]
    assert searched["results"] and {hit["source"] for hit in searched["results"]} == {"team-a"}
    assert other[0] == "error" and other[1].replace(str(theirs[0]["document_id"]), "999999") == missing[1]


async def test_static_tokens_keep_working_beside_oauth(
    settings: Settings, two_sources: tuple[Runtime, Metrics], idp: IdentityProvider, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(token_entry("ci-bot", STATIC, ["docs:read:team-b"]))
    async with docserver(settings, two_sources, idp, api_tokens_file=tokens) as url:
        caller = Caller(url)
        by_static = await caller.call(STATIC)
        by_jwt = await caller.call(idp.mint(scope="docs:read"))
        refused = await caller.refused("dsk_guessed")

    assert names(by_static) == ["team-b"]
    assert sorted(names(by_jwt)) == ["team-a", "team-b"]
    assert refused[0].status_code == 401


async def test_log_lines_name_the_subject_and_never_the_token(
    settings: Settings, two_sources: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    with capture_events() as events:
        async with docserver(settings, two_sources, idp) as url:
            token = idp.mint(sub="alice@example.com", scope="docs:read")
            await Caller(url).call(token, "search_docs", {"query": "install"})

    by_event = {event["event"]: event for event in events}
    assert by_event["http_request"]["principal"] == "alice@example.com"
    assert by_event["tool_call"]["principal"] == "alice@example.com"
    signature = token.rpartition(".")[2]
    assert token not in repr(events) and signature not in repr(events)


async def test_a_client_credentials_token_is_named_by_its_client(
    settings: Settings, two_sources: tuple[Runtime, Metrics], idp: IdentityProvider
) -> None:
    with capture_events() as events:
        async with docserver(settings, two_sources, idp) as url:
            await Caller(url).call(idp.mint(sub=None, client_id="ci-pipeline", scope="docs:read"))
    assert {event.get("principal") for event in events if event["event"] == "tool_call"} == {"ci-pipeline"}


def test_an_issuer_needs_the_public_url(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSERVER_AUTH_ISSUER", "https://id.example.com/realms/docs")
    with pytest.raises(ConfigError, match="DOCSERVER_AUTH_ISSUER needs DOCSERVER_PUBLIC_URL"):
        load_settings()


def test_the_audience_defaults_to_the_mcp_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSERVER_AUTH_ISSUER", "https://id.example.com/realms/docs")
    monkeypatch.setenv("DOCSERVER_PUBLIC_URL", "https://docs.example.com/")
    auth = load_settings().auth
    assert auth.enabled and auth.expected_audience == auth.resource == "https://docs.example.com/mcp"
    assert metadata_url(auth.resource) == "https://docs.example.com/.well-known/oauth-protected-resource/mcp"
    monkeypatch.setenv("DOCSERVER_AUTH_AUDIENCE", "api://docserver")
    assert load_settings().auth.expected_audience == "api://docserver"


def test_scopes_come_from_scope_or_scp() -> None:
    assert granted_scopes({"scope": "openid docs:read:a"}) == ["openid", "docs:read:a"]
    assert granted_scopes({"scp": ["docs:admin", 3]}) == ["docs:admin"]
    assert granted_scopes({"scp": "docs:read"}) == ["docs:read"]
    assert granted_scopes({}) == []


@pytest.mark.parametrize(
    ("jwk", "algorithm", "fits"),
    [
        ({"kty": "RSA"}, "RS256", True),
        ({"kty": "RSA"}, "PS384", True),
        ({"kty": "RSA", "alg": "RS512"}, "RS256", False),
        ({"kty": "RSA"}, "ES256", False),
        ({"kty": "RSA"}, "HS256", False),
        ({"kty": "EC", "crv": "P-256"}, "ES256", True),
        ({"kty": "EC", "crv": "P-384"}, "ES256", False),
        ({"kty": "oct"}, "HS256", False),
    ],
)
def test_an_algorithm_must_fit_the_key(jwk: dict[str, str], algorithm: str, fits: bool) -> None:
    assert key_fits(jwk, algorithm) is fits
