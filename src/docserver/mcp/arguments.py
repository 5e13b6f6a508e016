"""Tool arguments that do not fit a tool's input schema: one plain `isError` message that says what to send.

The SDK validates arguments with pydantic and returns pydantic's dump (with an
errors.pydantic.dev link) as the tool result. This middleware leaves valid
calls alone: it looks only at calls the SDK answered with `isError`, reruns the
SDK's own validation (mcp/sdk.py) and, when that fails, replaces the text with
a sentence naming each wrong argument and the schema's expectation, and a
sentence listing the tool's arguments. Unknown arguments are refused too (the
schemas say `additionalProperties: false`): pydantic would drop them silently,
and a model that invented `max_results` should learn that it has no effect.
A call to an unknown tool stays an `isError` result (docs/clients.md says why)
whose message lists the tools.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, ServerRequestContext
from mcp.server.mcpserver import MCPServer

from docserver.mcp.sdk import argument_errors, forbid_unknown_arguments

_KINDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}


class ArgumentCheck:
    """ServerMiddleware: plain messages for tool calls whose arguments do not fit the tool's input schema."""

    def __init__(self, mcp: MCPServer) -> None:
        self._mcp = mcp
        self._schemas = forbid_unknown_arguments(mcp)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        result = await call_next(ctx)
        if ctx.method == "tools/call" and isinstance(result, dict) and result.get("isError") is True:
            text = self._explain(ctx.params)
            if text is not None:  # the result keeps the envelope the SDK gave it; only its text changes
                result["content"] = [{"type": "text", "text": text}]
        return result

    def _explain(self, params: Any) -> str | None:
        """The plain message for a failed call to an unknown tool or with invalid arguments; None otherwise."""
        if not isinstance(params, Mapping):
            return None
        tool, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(tool, str) or not isinstance(arguments, dict):
            return None
        schema = self._schemas.get(tool)
        if schema is None:
            return f"Unknown tool {tool[:100]!r}: the tools are {', '.join(self._schemas)}."
        # Only now, on the error path: was it the arguments? The SDK validates them first, the same way.
        invalid = argument_errors(self._mcp, tool, arguments)
        return message(tool, schema, arguments, invalid) if invalid else None


def message(tool: str, schema: Mapping[str, Any], arguments: Mapping[str, Any], invalid: list[str]) -> str:
    """Two sentences: what is wrong with each argument, then every argument the tool takes."""
    properties: Mapping[str, Any] = schema["properties"]
    unknown = sorted(arguments.keys() - properties.keys())
    problems = [f"`{name}` is not an argument of {tool}" for name in unknown]
    problems += [_problem(name, properties[name], arguments) for name in dict.fromkeys(invalid) if name in properties]
    return f"Invalid arguments for {tool}: {'; '.join(problems)}. {tool} takes {signature(schema)}."


def _problem(name: str, spec: Mapping[str, Any], arguments: Mapping[str, Any]) -> str:
    if name not in arguments:
        return f"`{name}` is missing: send {expectation(spec)}"
    return f"`{name}` must be {expectation(spec)}, not {_given(arguments[name], spec)}"


def signature(schema: Mapping[str, Any]) -> str:
    """Every argument with what it expects, e.g. `query` (a string of 1 to 1000 characters, required)."""
    required = set(schema.get("required", ()))
    parts = [
        f"`{name}` ({expectation(spec)}{', required' if name in required else ''})"
        for name, spec in schema["properties"].items()
    ]
    return ", ".join(parts) if parts else "no arguments"


def expectation(spec: Mapping[str, Any]) -> str:
    """The JSON Schema of one argument in words: its type and bounds."""
    kinds = [kind for kind in _types(spec) if kind != "null"]
    text = " or ".join(_KINDS.get(kind, kind) for kind in kinds) or "a value"
    text += _bounds(spec.get("minimum"), spec.get("maximum"), "")
    return text + _bounds(spec.get("minLength"), spec.get("maxLength"), " characters")


def _bounds(low: Any, high: Any, unit: str) -> str:
    if low is not None and high is not None:
        return f" {'of' if unit else 'from'} {low} to {high}{unit}"
    if low is not None or high is not None:
        return f" of at {'least' if high is None else 'most'} {low if high is None else high}{unit}"
    return ""


def _types(spec: Mapping[str, Any]) -> list[str]:
    if "type" in spec:
        kind = spec["type"]
        return list(kind) if isinstance(kind, list) else [kind]
    return [kind for option in spec.get("anyOf", ()) for kind in _types(option)]


def _given(value: Any, spec: Mapping[str, Any]) -> str:
    """What was sent, without echoing caller text: a string is described by its length only."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if "string" in _types(spec) else "a string"
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return "a list" if isinstance(value, list) else "an object"
