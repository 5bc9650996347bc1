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

from llava_video_mcp.tools.answer import Answered

log = logging.getLogger(__name__)

_KINDS = {
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
}


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
        properties = tool.parameters.get("properties", {})
        errors = [error for error in exc.errors(include_url=False) if _on_the_branch_sent(error, parsed)]
        problems = [_sentence(error, properties) for error in errors]
        raise ToolError(" ".join(dict.fromkeys(problems))) from None


def _on_the_branch_sent(error: Any, arguments: dict[str, Any]) -> bool:
    """Whether a union error belongs to the kind of value that was sent. A source may be a string or an object;
    for an object, "must be a string" says nothing useful, and for a string the object's errors neither."""
    value: Any = arguments
    for part in error["loc"]:
        inside_dict = isinstance(value, dict) and part in value
        if inside_dict or (isinstance(value, list) and isinstance(part, int) and part < len(value)):
            value = value[part]
        elif isinstance(part, str) and part not in ("str", "int", "float", "bool"):
            return isinstance(value, dict)  # the tag of an object branch
        elif isinstance(part, str):
            return not isinstance(value, dict)  # the tag of a plain branch
    return True


def _sentence(error: Any, properties: dict[str, Any]) -> str:
    location = [str(part) for part in error["loc"] if not (isinstance(part, str) and part[:1].isupper())]
    location = [part for part in location if part not in ("str", "int", "float", "bool")]
    name = location[0] if location else "arguments"
    where = name + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in location[1:])
    schema = properties.get(name, {})
    kind = error["type"]
    got = _shown(error.get("input"))
    if kind == "missing":
        return f"{where} is required."
    if kind == "extra_forbidden":
        return f"{where} is not an argument here."
    if kind in _KINDS:
        return f"{where} must be {_KINDS[kind]}; got {got}."
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{where} must be {_range(schema)}; got {got}."
    if kind in ("too_short", "too_long"):
        return f"{where} must hold {_count(schema)}; got {len(error.get('input') or [])}."
    if kind in ("string_too_short", "string_too_long"):
        return f"{where} must be {_length(schema)}; got {len(str(error.get('input') or ''))} characters."
    if kind == "string_pattern_mismatch":
        return f"{where} is not valid ({schema.get('description', 'see the schema').rstrip('.')}); got {got}."
    if kind in ("literal_error", "enum"):
        return f"{where} must be one of {error.get('ctx', {}).get('expected', 'the listed values')}; got {got}."
    return f"{where}: {error['msg']}; got {got}."


def _range(schema: dict[str, Any]) -> str:
    options = [s for s in schema.get("anyOf", [schema]) if "type" in s and s["type"] != "null"]
    bounds = options[0] if options else schema
    low = bounds.get("minimum", bounds.get("exclusiveMinimum"))
    high = bounds.get("maximum", bounds.get("exclusiveMaximum"))
    if low is not None and high is not None:
        return f"{low:g} to {high:g}" if "minimum" in bounds else f"more than {low:g} and at most {high:g}"
    if low is not None:
        return f"at least {low:g}" if "minimum" in bounds else f"more than {low:g}"
    if high is not None:
        return f"at most {high:g}"
    return "in range"


def _count(schema: dict[str, Any]) -> str:
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low is not None and high is not None:
        return f"{low} to {high} items"
    return f"at least {low} items" if low is not None else f"at most {high} items"


def _length(schema: dict[str, Any]) -> str:
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") == "string"]
    bounds = options[0] if options else schema
    low, high = bounds.get("minLength"), bounds.get("maxLength")
    if low is not None and high is not None:
        return f"{low} to {high} characters long"
    return f"at least {low} characters long" if low is not None else f"at most {high} characters long"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def lean_schema(schema: dict[str, Any], *, for_output: bool = False) -> dict[str, Any]:
    """The schema as an agent needs it: no generated titles ("Num Frames"), `X | None` as a type list, definitions
    inlined, no `default: null` (an optional argument's absence says it).

    An output schema (`for_output`) keeps only the shape: no descriptions or defaults, and below the top level no
    `required` lists or `type: object` beside `properties`. The tool's description and the result itself say what
    the fields mean; every tool's list costs the agent tokens in every conversation.
    """
    definitions = schema.get("$defs", {})

    def lean(node: Any, nested: bool) -> Any:
        if isinstance(node, list):
            return [lean(item, nested) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            return lean({**target, **{k: v for k, v in node.items() if k != "$ref"}}, nested)
        result: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("title", "$defs") or (key == "default" and value is None):
                continue
            if for_output and key in ("description", "default", "required"):
                continue
            if for_output and nested and key == "type" and value == "object" and "properties" in node:
                continue
            if key == "properties":
                result[key] = {name: lean(field, True) for name, field in value.items()}
            else:
                result[key] = lean(value, nested)
        options = result.get("anyOf")
        if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
            other = next(option for option in options if option != {"type": "null"})
            if isinstance(other.get("type"), str):
                del result["anyOf"]
                result.update(other)
                result["type"] = [other["type"], "null"]
        return result

    return lean(schema, False)  # type: ignore[no-any-return]
