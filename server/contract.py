"""The tools' contract with the calling agent: exact arguments, and errors it can act on.

The MCP SDK validates arguments leniently (the string "8" becomes 8) and ignores names it does not know (so a
misspelt `frames: 4` silently runs with the default), and its validation errors are pydantic's dumps ending in a
documentation URL. `StrictTool` checks first, in strict mode: an unknown name, a wrong type or a value out of
range is refused with a sentence that names the argument, what it takes, and what was sent.
"""

from __future__ import annotations

import base64
import json
import logging
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
            check_arguments(self, arguments)
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
    structured = answer.model_dump(mode="json", exclude_none=True)
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


def check_arguments(tool: Tool, arguments: dict[str, Any]) -> None:
    """Raise ToolError with readable sentences when `arguments` do not meet the tool's schema exactly."""
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
    parsed = tool.fn_metadata.pre_parse_json(arguments)
    try:
        model.model_validate(parsed, strict=True)
    except ValidationError as exc:
        raise ToolError(" ".join(problems(exc, parsed, tool.parameters.get("properties", {})))) from None


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""
