"""Settings: every one documented, bad values refused in one line, flags over environment."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from docserver.config import ENVIRONMENT_VARIABLES, env_name, load_settings
from docserver.embed.factory import open_embedder
from docserver.embed.hashing import HashEmbedder
from docserver.errors import ConfigError
from docserver.paths import default_database_path
from support.docserver_process import docserver_env, free_port, run_cli, start_docserver

CONFIGURATION_DOC = Path(__file__).parents[1] / "docs" / "configuration.md"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No setting in the environment, and a working directory of our own."""
    for name in list(os.environ):
        if name.startswith(("DOCSERVER_", "LOG_")) or name in ENVIRONMENT_VARIABLES.values():
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


# -- documentation --------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", sorted(ENVIRONMENT_VARIABLES))
def test_every_setting_has_a_row_in_the_configuration_doc(setting: str) -> None:
    name = env_name(setting)
    row = re.compile(rf"^\| `{re.escape(name)}` \|", re.MULTILINE)
    documented = row.search(CONFIGURATION_DOC.read_text(encoding="utf-8")) is not None
    assert documented, f"{name} has no row in docs/configuration.md"


def test_env_name_is_the_variable_behind_a_field() -> None:
    assert (env_name("http.port"), env_name("telemetry.log_level")) == ("DOCSERVER_PORT", "LOG_LEVEL")


# -- invalid values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DOCSERVER_PORT", "abc"),
        ("DOCSERVER_PORT", "70000"),
        ("DOCSERVER_EMBEDDER", "bogus"),
        ("DOCSERVER_DATABASE_URL", "mysql://x"),
        ("DOCSERVER_DATABASE_URL", "sqlite:///"),
        ("DOCSERVER_EMBEDDING_URL", "ftp://example.com/v1"),
        ("DOCSERVER_EMBEDDING_DIMENSIONS", "many"),
        ("DOCSERVER_EMBEDDING_BATCH_SIZE", "0"),
        ("DOCSERVER_EMBEDDING_TIMEOUT", "-1"),
        ("DOCSERVER_EMBEDDING_MAX_RETRIES", "11"),
        ("DOCSERVER_CACHE_TTL", "0"),
        ("DOCSERVER_CHUNK_MAX_CHARS", "10"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_an_invalid_value_is_one_line_naming_the_variable(
    clean_env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert message.startswith(f"invalid setting {variable}: ")
    assert "\n" not in message
    assert "pydantic" not in message


def test_a_config_error_does_not_chain_the_validation_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_PORT", "abc")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_an_invalid_override_names_the_variable_too(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"^invalid setting DOCSERVER_PORT: "):
        load_settings(http={"port": -1})


# -- parsing and defaults -------------------------------------------------------------------------


def test_allowed_hosts_are_comma_separated(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_ALLOWED_HOSTS", " docs.example.com,docs.example.com:* , ,api.example.com")
    assert load_settings().http.allowed_hosts == ["docs.example.com", "docs.example.com:*", "api.example.com"]


def test_allowed_origins_are_comma_separated(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_ALLOWED_ORIGINS", "https://a.example.com,https://b.example.com")
    assert load_settings().http.allowed_origins == ["https://a.example.com", "https://b.example.com"]


def test_allowed_hosts_also_accept_a_json_list(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_ALLOWED_HOSTS", '["docs.example.com", "x.example.com:*"]')
    assert load_settings().http.allowed_hosts == ["docs.example.com", "x.example.com:*"]


def test_defaults_are_loopback_8080_a_local_sqlite_file_and_the_hash_embedder(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8080)
    assert settings.store.url == f"sqlite:///{default_database_path()}"
    assert settings.embedding.provider == "hash"
    assert settings.http.allowed_hosts == []
    assert settings.http.is_loopback


def test_the_default_embedder_is_the_built_in_one(clean_env: pytest.MonkeyPatch) -> None:
    assert isinstance(open_embedder(load_settings()), HashEmbedder)


def test_an_empty_variable_counts_as_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_PORT", "")
    clean_env.setenv("DOCSERVER_EMBEDDER", "")
    settings = load_settings()
    assert (settings.http.port, settings.embedding.provider) == (8080, "hash")


def test_enumerated_values_ignore_case(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_EMBEDDER", "HASH")
    clean_env.setenv("LOG_LEVEL", "debug")
    settings = load_settings()
    assert (settings.embedding.provider, settings.telemetry.log_level) == ("hash", "DEBUG")


def test_an_absolute_sqlite_path_keeps_its_leading_slash(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_DATABASE_URL", "sqlite:////var/lib/docserver/docs.db")
    assert load_settings().store.sqlite_path == "/var/lib/docserver/docs.db"


# -- flags over environment -----------------------------------------------------------------------


def test_host_and_port_overrides_win_over_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_HOST", "0.0.0.0")
    clean_env.setenv("DOCSERVER_PORT", "9000")
    settings = load_settings(http={"host": "127.0.0.2", "port": 1234})
    assert (settings.http.host, settings.http.port) == ("127.0.0.2", 1234)


def test_absent_flags_leave_the_environment_in_force(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_HOST", "0.0.0.0")
    clean_env.setenv("DOCSERVER_PORT", "9000")
    settings = load_settings(http={"host": None, "port": None})
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 9000)


@pytest.mark.slow
def test_serve_flags_win_over_the_environment(tmp_path: Path) -> None:
    env_port = free_port()
    # 192.0.2.1 (TEST-NET-1) is on no local interface: binding it would fail.
    env = docserver_env(tmp_path / "serve.db", {"DOCSERVER_HOST": "192.0.2.1", "DOCSERVER_PORT": str(env_port)})
    with start_docserver(env, tmp_path / "serve.log", "--host", "127.0.0.1") as server:
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{env_port}/healthz", timeout=5)


def test_an_override_leaves_the_rest_of_its_group_to_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_HOST", "0.0.0.0")
    settings = load_settings(http={"port": 1234})
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 1234)


def test_a_check_across_settings_names_both_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DOCSERVER_DB_POOL_MIN_SIZE", "20")
    clean_env.setenv("DOCSERVER_DB_POOL_MAX_SIZE", "3")
    with pytest.raises(ConfigError, match=r"^invalid settings: DOCSERVER_DB_POOL_MIN_SIZE must not be larger than "):
        load_settings()


def test_an_unknown_override_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"^invalid setting http\.prot: "):
        load_settings(http={"prot": 1234})


def test_replace_changes_one_value_and_keeps_the_rest(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings(http={"port": 1234})
    changed = settings.replace(embedding={"provider": "local"})
    assert (changed.embedding.provider, changed.http.port) == ("local", 1234)
    assert settings.embedding.provider == "hash"


def test_a_misspelt_setting_is_named_with_the_closest_known_one() -> None:
    from docserver.config import unknown_variables

    found = unknown_variables(
        {"DOCSERVER_EMBEDER": "local", "DOCSERVER_PORT": "9000", "PATH": "/bin", "DOCSERVER_ZZZ": "1"}
    )

    assert found == [("DOCSERVER_EMBEDER", "DOCSERVER_EMBEDDER"), ("DOCSERVER_ZZZ", None)]


def test_the_cli_warns_once_per_unknown_setting(tmp_path: Path) -> None:
    env = {**docserver_env(tmp_path / "db.db"), "DOCSERVER_EMBEDER": "local"}
    result = run_cli("sources", env=env)

    assert result.returncode == 0
    [line] = [line for line in result.stderr.splitlines() if "unknown_setting" in line]
    assert "DOCSERVER_EMBEDDER" in line
