"""/metrics and /debug/pprof behind a docs:admin bearer (DOCSERVER_ADMIN_AUTH): static API tokens and real JWTs.

The apps are driven in process through their HTTP interface: the public app,
and the admin listener's app (DOCSERVER_ADMIN_ADDR). OAuth tokens are minted
by the identity provider stand-in, whose JWKS docserver fetches over real HTTP.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from docserver.access.tokens import new_token, token_entry
from docserver.app import create_admin_app, create_app
from docserver.config import ConfigError, Settings, load_settings
from docserver.config.auth import AuthSettings
from docserver.config.profiling import ProfilingSettings
from docserver.observability.exposition import metrics_token
from docserver.observability.metrics import Metrics
from docserver.runtime import Runtime
from support.idp import IdentityProvider, identity_provider
from support.inprocess import http_client, new_metrics

ADMIN = new_token()
READER = new_token()
METRICS_TOKEN = "metrics-own-token"
PROFILING_TOKEN = "pprof-own-token"
PUBLIC_URL = "http://127.0.0.1"


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    entries = [token_entry("ops", ADMIN, ["docs:admin"]), token_entry("ci-bot", READER, ["docs:read"])]
    path.write_text("\n".join(entries), encoding="utf-8")
    return path


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    with identity_provider() as provider:
        yield provider


def admin_settings(settings: Settings, auth: AuthSettings) -> Settings:
    return settings.model_copy(
        update={
            "auth": auth,
            "telemetry": settings.telemetry.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)}),
            "profiling": ProfilingSettings(enabled=True, token=SecretStr(PROFILING_TOKEN), min_interval=0),
        }
    )


def static(settings: Settings, tokens_file: Path, mode: str) -> Settings:
    return admin_settings(settings, AuthSettings(api_tokens_file=tokens_file, admin_auth=mode))


def oauth(settings: Settings, idp: IdentityProvider) -> Settings:
    auth = AuthSettings(issuer=idp.issuer, public_url=PUBLIC_URL, admin_auth="scope")
    idp.audience = auth.expected_audience
    return admin_settings(settings, auth)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic_password(token: str) -> dict[str, str]:
    """What `go tool pprof http://:TOKEN@host/...` sends."""
    return {"Authorization": "Basic " + base64.b64encode(f":{token}".encode()).decode()}


def failures(metrics: Metrics, endpoint: str, reason: str) -> float:
    value = metrics.registry.get_sample_value("docserver_auth_failures_total", {"endpoint": endpoint, "reason": reason})
    assert value is not None
    return value


async def get(app: object, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with http_client(app, headers) as http:  # type: ignore[arg-type]
        return await http.get(path)


# --- static API tokens --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/metrics", "/debug/pprof/"])
async def test_scope_mode_serves_an_admin_token_and_refuses_the_own_token(
    settings: Settings, runtime: Runtime, tokens_file: Path, path: str
) -> None:
    metrics = new_metrics()
    app = create_app(static(settings, tokens_file, "scope"), runtime, metrics)
    own = METRICS_TOKEN if path == "/metrics" else PROFILING_TOKEN

    served = await get(app, path, bearer(ADMIN))
    refused = await get(app, path, bearer(own))

    assert served.status_code == 200
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Bearer realm="docserver-')
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert own not in refused.text
    assert failures(metrics, "metrics" if path == "/metrics" else "pprof", "unknown_token") == 1


@pytest.mark.parametrize("path", ["/metrics", "/debug/pprof/"])
async def test_a_token_without_docs_admin_gets_403_insufficient_scope(
    settings: Settings, runtime: Runtime, tokens_file: Path, path: str
) -> None:
    metrics = new_metrics()
    app = create_app(static(settings, tokens_file, "scope"), runtime, metrics)

    refused = await get(app, path, bearer(READER))

    assert refused.status_code == 403
    assert (
        refused.headers["www-authenticate"]
        .split(", Basic")[0]
        .endswith('error="insufficient_scope", scope="docs:admin"')
    )
    assert failures(metrics, "metrics" if path == "/metrics" else "pprof", "insufficient_scope") == 1


@pytest.mark.parametrize("path", ["/metrics", "/debug/pprof/"])
async def test_no_credentials_get_401_with_a_challenge(
    settings: Settings, runtime: Runtime, tokens_file: Path, path: str
) -> None:
    metrics = new_metrics()
    app = create_app(static(settings, tokens_file, "scope"), runtime, metrics)

    refused = await get(app, path)

    assert refused.status_code == 401
    assert "error=" not in refused.headers["www-authenticate"]
    assert failures(metrics, "metrics" if path == "/metrics" else "pprof", "missing") == 1


@pytest.mark.parametrize("headers", [bearer(METRICS_TOKEN), bearer(ADMIN)], ids=["own token", "admin token"])
async def test_token_or_scope_mode_accepts_either(
    settings: Settings, runtime: Runtime, tokens_file: Path, headers: dict[str, str]
) -> None:
    app = create_app(static(settings, tokens_file, "token_or_scope"), runtime, new_metrics())
    assert (await get(app, "/metrics", headers)).status_code == 200


async def test_without_a_metrics_token_the_admin_scope_still_closes_metrics(
    settings: Settings, runtime: Runtime, tokens_file: Path
) -> None:
    secured = static(settings, tokens_file, "token_or_scope")
    secured = secured.model_copy(update={"telemetry": secured.telemetry.model_copy(update={"metrics_token": None})})
    app = create_app(secured, runtime, new_metrics())

    assert (await get(app, "/metrics")).status_code == 401
    assert (await get(app, "/metrics", bearer(ADMIN))).status_code == 200


async def test_token_mode_keeps_the_own_token_only(settings: Settings, runtime: Runtime, tokens_file: Path) -> None:
    app = create_app(static(settings, tokens_file, "token"), runtime, new_metrics())

    assert (await get(app, "/metrics", bearer(METRICS_TOKEN))).status_code == 200
    refused = await get(app, "/metrics", bearer(ADMIN))
    assert (refused.status_code, refused.headers["www-authenticate"]) == (401, 'Bearer realm="docserver-metrics"')


async def test_go_tool_pprof_can_send_an_admin_token_as_the_basic_password(
    settings: Settings, runtime: Runtime, tokens_file: Path
) -> None:
    app = create_app(static(settings, tokens_file, "scope"), runtime, new_metrics())
    assert (await get(app, "/debug/pprof/", basic_password(ADMIN))).status_code == 200


async def test_the_admin_listener_takes_the_admin_token_and_the_public_port_serves_neither(
    settings: Settings, runtime: Runtime, tokens_file: Path
) -> None:
    secured = static(settings, tokens_file, "scope")
    secured = secured.model_copy(update={"http": secured.http.model_copy(update={"admin_addr": "127.0.0.1:9090"})})
    metrics = new_metrics()
    admin_app = create_admin_app(secured, runtime, metrics)
    public_app = create_app(secured, runtime, metrics)

    assert (await get(admin_app, "/metrics", bearer(ADMIN))).status_code == 200
    assert (await get(admin_app, "/debug/pprof/", bearer(ADMIN))).status_code == 200
    assert (await get(admin_app, "/metrics", bearer(READER))).status_code == 403
    assert (await get(admin_app, "/metrics", bearer(METRICS_TOKEN))).status_code == 401
    assert (await get(public_app, "/metrics", bearer(ADMIN))).status_code == 404


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("Bearer " + "x" * 10_000, "malformed"),
        ("Token " + ADMIN, "malformed"),
        ("Basic !!!", "malformed"),
        ("Bearer dsk_guessed", "unknown_token"),
    ],
    ids=["oversized", "other scheme", "bad basic", "guessed"],
)
async def test_a_bad_header_is_refused_for_its_reason(
    settings: Settings, runtime: Runtime, tokens_file: Path, authorization: str, reason: str
) -> None:
    metrics = new_metrics()
    app = create_app(static(settings, tokens_file, "scope"), runtime, metrics)
    refused = await get(app, "/metrics", {"Authorization": authorization})
    assert refused.status_code == 401
    assert failures(metrics, "metrics", reason) == 1


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing"),
        (METRICS_TOKEN.encode(), "malformed"),
        (b"Bearer " + METRICS_TOKEN.encode(), None),
        (b"bearer  " + METRICS_TOKEN.encode() + b" ", None),
        (b"Bearer " + METRICS_TOKEN[:-1].encode(), "unknown_token"),
        ("Bearer sécret".encode(), "unknown_token"),  # non-ASCII: a wrong token, never an exception
    ],
)
def test_the_metrics_token_is_compared_as_bytes(authorization: bytes | None, reason: str | None) -> None:
    assert metrics_token(METRICS_TOKEN)(authorization) == reason


# --- OAuth access tokens ----------------------------------------------------------------------


async def test_a_jwt_with_docs_admin_is_served_and_one_without_gets_403_naming_the_metadata(
    settings: Settings, runtime: Runtime, idp: IdentityProvider
) -> None:
    metrics = new_metrics()
    app = create_app(oauth(settings, idp), runtime, metrics)

    served = await get(app, "/metrics", bearer(idp.mint(scope="docs:admin")))
    refused = await get(app, "/metrics", bearer(idp.mint(scope="docs:read")))

    assert served.status_code == 200 and b"docserver_build_info" in served.content
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"] == (
        f'Bearer realm="docserver-metrics", resource_metadata="{PUBLIC_URL}/.well-known/oauth-protected-resource/mcp", '
        'error="insufficient_scope", scope="docs:admin"'
    )
    assert failures(metrics, "metrics", "insufficient_scope") == 1


async def test_an_expired_admin_jwt_is_refused_on_the_profiling_endpoints_for_its_reason(
    settings: Settings, runtime: Runtime, idp: IdentityProvider
) -> None:
    metrics = new_metrics()
    app = create_app(oauth(settings, idp), runtime, metrics)
    token = idp.mint(scope="docs:admin", iat=1_000_000, exp=1_000_300)

    refused = await get(app, "/debug/pprof/", bearer(token))

    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert refused.headers["x-go-pprof"] == "1"
    assert token not in refused.text
    assert failures(metrics, "pprof", "expired") == 1


async def test_a_forged_admin_jwt_is_refused(settings: Settings, runtime: Runtime, idp: IdentityProvider) -> None:
    metrics = new_metrics()
    app = create_app(oauth(settings, idp), runtime, metrics)
    refused = await get(app, "/metrics", bearer(idp.mint_unsigned(scope="docs:admin")))
    assert refused.status_code == 401
    assert failures(metrics, "metrics", "bad_signature") == 1


# --- settings -----------------------------------------------------------------------------------


def test_the_admin_scope_needs_a_source_of_tokens(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSERVER_ADMIN_AUTH", "scope")
    with pytest.raises(ConfigError, match="DOCSERVER_ADMIN_AUTH=scope needs DOCSERVER_API_TOKENS_FILE"):
        load_settings()


def test_profiling_needs_its_token_unless_the_admin_scope_lets_callers_in(
    settings: Settings, tokens_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENABLE_PROFILING", "true")
    with pytest.raises(ConfigError, match="needs PROFILING_TOKEN"):
        load_settings()
    monkeypatch.setenv("DOCSERVER_API_TOKENS_FILE", str(tokens_file))
    monkeypatch.setenv("DOCSERVER_ADMIN_AUTH", "scope")
    assert load_settings().profiling.enabled
