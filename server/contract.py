"""The tools' contract with the calling agent: exact arguments, and errors it can act on.

The MCP SDK validates arguments leniently (the string "8" becomes 8) and ignores names it does not know (so a
misspelt `frames: 4` silently runs with the default), and its validation errors are pydantic's dumps ending in a
documentation URL. `StrictTool` checks first, in strict mode: an unknown name, a wrong type or a value out of
range is refused with a sentence that names the argument, what it takes, and what was sent.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import ValidationError

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
    """A tool whose arguments are checked strictly before the SDK sees them."""

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        check_arguments(self, arguments)
        return await super().run(arguments, context, convert_result)


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
        problems = [_sentence(error, properties) for error in exc.errors(include_url=False)]
        raise ToolError(" ".join(dict.fromkeys(problems))) from None


def _sentence(error: Any, properties: dict[str, Any]) -> str:
    location = [str(part) for part in error["loc"]]
    name = location[0] if location else "arguments"
    where = name + "".join(f"[{part}]" for part in location[1:])
    schema = properties.get(name, {})
    kind = error["type"]
    got = _shown(error.get("input"))
    if kind == "missing":
        return f"{where} is required."
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
