"""The tools' contract with the calling agent: exact arguments, and errors it can act on.

The MCP SDK validates arguments leniently (the string "8" becomes 8, and so does `true` for a number) and ignores
names it does not know (so a misspelt `frames: 4` silently runs with the default), and its validation errors are
pydantic's dumps ending in a documentation URL. `StrictTool` checks first, in strict mode: an unknown name, a wrong
type or a value out of range is refused with a sentence that names the argument, what it takes, and what was sent.

One leniency is kept on purpose: a number written as a string of digits ("10", "2.5") for a numeric argument. The
MCP Inspector before 0.16 sends every number typed into its form that way, and so do some hosts; nothing else is
converted (`"ten"`, `"1e3"`, `true` for a number, `"10"` for a string all stay refused).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import ValidationError

from llava_video_mcp.server.arguments import lean_schema, problems
from llava_video_mcp.tools.answer import Answered

log = logging.getLogger(__name__)


class StrictTool(Tool):
    """A tool whose arguments are checked strictly before the SDK sees them, and whose schemas are lean."""

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        try:
            arguments = check_arguments(self, arguments)
        except ToolError as exc:
            return error_result(str(exc), retryable=False)
        try:
            return await super().run(arguments, context, convert_result)
        except Exception as exc:  # never the SDK's bare "Error executing tool": a bug, with an incident id
            return incident_result(self.name, exc.__cause__ or exc)

    @classmethod
    def define(
        cls,
        fn: Callable[..., Any],
        *,
        title: str,
        description: str,
        annotations: ToolAnnotations,
        open_objects: tuple[str, ...] = (),
    ) -> StrictTool:
        """The tool for `fn`, with lean schemas (see `lean_schema`); the result fields named in `open_objects` are
        published as plain objects (diagnostics whose fields explain themselves in every result)."""
        tool = cls.from_function(fn, title=title, description=description, annotations=annotations)
        assert isinstance(tool, StrictTool)
        tool.parameters = lean_schema(tool.parameters)
        output = tool.fn_metadata.output_schema
        if output is not None:
            lean = lean_schema(output, for_output=True)
            lean["properties"] |= {name: _opened(lean["properties"][name]) for name in open_objects}
            tool.fn_metadata.output_schema = lean
        return tool


def _opened(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's schema reduced to its kind: an object, or a list of objects (nullable where it was)."""
    kinds = schema.get("type", "object")
    if "array" in (kinds if isinstance(kinds, list) else [kinds]):
        return {"type": kinds, "items": {"type": "object"}}
    return {"type": kinds}


def answer_result(answer: Answered) -> CallToolResult:
    """The answer as structured content, with its compact JSON as the text block (for clients that read only text;
    MCP asks for both) and the evidence images after it. Fields that are null (no note, no transcript) are left out
    of both."""
    structured = to_the_millisecond(answer.model_dump(mode="json", exclude_none=True))
    text = json.dumps(structured, separators=(",", ":"), ensure_ascii=False)
    content: list[ContentBlock] = [TextContent(type="text", text=text)]
    content += [
        ImageContent(type="image", data=base64.b64encode(image).decode("ascii"), mime_type="image/jpeg")
        for image in answer.images
    ]
    return CallToolResult(content=content, structured_content=structured)


def error_result(text: str, *, retryable: bool) -> CallToolResult:
    """A failure the agent can act on: the text says what to change; `_meta.retryable` whether the same call may
    succeed when simply tried again (a network hiccup) or not (a missing file, an argument out of range)."""
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True, _meta={"retryable": retryable})


def incident_result(tool: str, error: BaseException) -> CallToolResult:
    """An unexpected failure (a bug): a short incident id for the agent, the traceback in the log under it."""
    incident = secrets.token_hex(4)
    log.error("%s failed unexpectedly (incident %s)", tool, incident, exc_info=error)
    return error_result(
        f"{tool} failed on an unexpected problem in this server (incident {incident}; the details are in the server's "
        "log under that id). The call may work with other arguments; report the incident id if it keeps happening.",
        retryable=False,
    )


def to_the_millisecond(result: Any) -> Any:
    """A result as JSON data with every time (a field named `*_s`) rounded to the millisecond: sums of float seconds
    read 29.900000000000002, and no clock behind them is finer than that."""
    if isinstance(result, dict):
        return {
            key: round(value, 3)
            if key.endswith("_s") and isinstance(value, float)
            else [round(v, 3) if isinstance(v, float) else to_the_millisecond(v) for v in value]
            if key.endswith("_s") and isinstance(value, list)
            else to_the_millisecond(value)
            for key, value in result.items()
        }
    if isinstance(result, list):
        return [to_the_millisecond(item) for item in result]
    return result


_DIGITS = {"integer": re.compile(r"[+-]?\d{1,18}"), "number": re.compile(r"[+-]?(\d{1,18}(\.\d*)?|\.\d+)")}
"""A number written as a string, as old clients send one: digits and a point only (no exponent, no nan, no inf)."""


def numbers_from_strings(schema: dict[str, Any], value: Any) -> Any:
    """`value` with each string of digits sent for a numeric argument (`"10"`) made the number it writes, wherever
    `schema` (the tool's lean input schema) takes a number and no string: top level, lists and objects within."""
    options = [schema, *schema.get("anyOf", [])]
    kinds = {kind for option in options for kind in _kinds(option)}
    if isinstance(value, str) and "string" not in kinds:
        for kind in ("integer", "number"):
            if kind in kinds and _DIGITS[kind].fullmatch(value.strip()):
                return int(value) if kind == "integer" else float(value)
        return value
    if isinstance(value, dict):
        properties: dict[str, Any] = next((o["properties"] for o in options if "properties" in o), {})
        return {key: numbers_from_strings(properties.get(key, {}), item) for key, item in value.items()}
    if isinstance(value, list):
        items: dict[str, Any] = next((o["items"] for o in options if isinstance(o.get("items"), dict)), {})
        return [numbers_from_strings(items, item) for item in value]
    return value


def _kinds(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return kind if isinstance(kind, list) else [kind]


def check_arguments(tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the tool takes them (a number sent as a string of digits made a number); ToolError with
    readable sentences when they do not meet the tool's schema exactly."""
    model = tool.fn_metadata.arg_model
    known = list(model.model_fields)
    unknown = [name for name in arguments if name not in model.model_fields]
    if unknown:
        names = ", ".join(f"'{name}'" for name in unknown[:5])
        raise ToolError(
            f"{tool.name} does not take {names}. Its arguments are: {', '.join(known)}."
            + _did_you_mean(unknown[0], known)
        )
    # The SDK's own pre-parsing first: some clients send a list as a JSON string, and that stays accepted.
    parsed = numbers_from_strings(tool.parameters, tool.fn_metadata.pre_parse_json(arguments))
    try:
        model.model_validate(parsed, strict=True)
    except ValidationError as exc:
        raise ToolError(" ".join(problems(exc, parsed, tool.parameters.get("properties", {})))) from None
    return dict(parsed)


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""
