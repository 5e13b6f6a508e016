"""The SDK internals docserver relies on still exist: a minor SDK release that renames one fails here.

Each adapter module (mcp/sdk.py, observability/otlp_exporter.py, access/shedding.py)
lists the private names it uses; the package metadata pins the versions they
were written against.
"""

from __future__ import annotations

import inspect

from docserver.mcp import sdk


def test_the_mcp_sdk_still_has_every_private_name_the_adapter_uses() -> None:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    server = MCPServer("contract")
    manager = StreamableHTTPSessionManager(sdk.lowlevel_server(server))
    instances = {MCPServer: server, StreamableHTTPSessionManager: manager}
    for owner, names in sdk.PRIVATE_NAMES.items():
        instance = instances.get(owner, sdk.lowlevel_server(server))
        missing = [name for name in names if not hasattr(instance, name)]
        assert missing == [], f"{owner.__name__} lost {missing}"


def test_the_overridden_session_manager_methods_keep_their_signatures() -> None:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    opening = inspect.signature(StreamableHTTPSessionManager._serve_opening_request)
    discard = inspect.signature(StreamableHTTPSessionManager._discard_session)

    assert list(opening.parameters) == ["self", "http_transport", "scope", "receive", "send"]
    assert list(discard.parameters) == ["self", "session_id", "transport"]


def test_the_sdk_span_middleware_is_still_the_default() -> None:
    from mcp.server._otel import OpenTelemetryMiddleware
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("contract")
    assert any(isinstance(item, OpenTelemetryMiddleware) for item in server.middleware)
    sdk.drop_sdk_spans(server)
    assert not any(isinstance(item, OpenTelemetryMiddleware) for item in server.middleware)


def test_the_sdk_still_validates_tool_arguments_through_the_replaceable_argument_model() -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("contract")

    @server.tool()
    def echo(word: str) -> str:
        return word

    schemas = sdk.forbid_unknown_arguments(server)

    assert schemas["echo"]["additionalProperties"] is False
    assert sdk.argument_errors(server, "echo", {"word": "a", "extra": 1}) == ["extra"]
    assert sdk.argument_errors(server, "echo", {}) == ["word"]
    assert sdk.argument_errors(server, "echo", {"word": "a"}) == []


def test_the_otlp_exporter_still_has_its_client_and_sends_our_encoding() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from docserver.observability import otlp_exporter
    from support.otlp_receiver import OtlpReceiver

    with OtlpReceiver() as receiver:
        exporter = otlp_exporter.LeanOtlpSpanExporter(endpoint=f"{receiver.url}/v1/traces", timeout=5)
        assert all(hasattr(exporter, name) for name in otlp_exporter.PRIVATE_NAMES)
        span = TracerProvider().get_tracer("contract").start_span("GET /healthz", attributes={"http.route": "/healthz"})
        span.end()

        assert exporter.export([span]).name == "SUCCESS"
        [received] = receiver.wait_for(lambda spans: spans)
        exporter.shutdown()
    assert (received.name, received.attributes) == ("GET /healthz", {"http.route": "/healthz"})


def test_uvicorns_httptools_protocol_still_has_every_name_the_shedding_protocol_uses() -> None:
    import asyncio

    import uvicorn
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    from uvicorn.server import ServerState

    from docserver.access import shedding

    loop = asyncio.new_event_loop()
    try:
        config = uvicorn.Config(lambda scope, receive, send: None, http="httptools", log_config=None)
        config.load()
        protocol = HttpToolsProtocol(config, ServerState(), config.loaded_app, loop)
        missing = [name for name in shedding.PROTOCOL_NAMES if not hasattr(protocol, name)]
    finally:
        loop.close()
    assert missing == [], f"HttpToolsProtocol lost {missing}"
    assert "self.url" in inspect.getsource(HttpToolsProtocol.on_url)
    assert STATUS_LINE[503].startswith(b"HTTP/1.1 503")


def test_a_repeated_search_is_served_through_the_sdks_public_middleware_contract() -> None:
    """mcp/answers.py relies on these: a middleware may return the wire dict itself, and the
    protocol's own request validator is public."""
    from mcp.server.context import ServerRequestContext
    from mcp_types.methods import validate_client_request

    fields = set(inspect.signature(ServerRequestContext).parameters)
    assert {"method", "params", "protocol_version", "request"} <= fields
    assert list(inspect.signature(validate_client_request).parameters)[:3] == ["method", "version", "params"]
