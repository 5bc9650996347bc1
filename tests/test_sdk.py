"""What the server relies on inside the MCP SDK, beyond its documented surface: `server/contract.py` overrides
`Tool.run` to check arguments strictly first, and reads and replaces `fn_metadata`'s argument model, JSON
pre-parsing and output schema. mcp is not capped at a minor version; this test fails loudly, naming what moved,
when a release changes any of it."""

from __future__ import annotations

import inspect
from importlib.metadata import version

from mcp.server.mcpserver.tools import Tool
from pydantic import BaseModel


def test_tool_run_takes_what_strict_tool_passes() -> None:
    parameters = list(inspect.signature(Tool.run).parameters)
    assert parameters[:4] == ["self", "arguments", "context", "convert_result"], (version("mcp"), parameters)
    assert inspect.iscoroutinefunction(Tool.run)


def test_fn_metadata_has_what_the_contract_reads_and_replaces() -> None:
    async def sample(source: str, num_frames: int = 8) -> dict[str, int]:
        return {}

    tool = Tool.from_function(sample, title="t", description="d")
    metadata = tool.fn_metadata
    assert issubclass(metadata.arg_model, BaseModel), version("mcp")
    assert set(metadata.arg_model.model_fields) == {"source", "num_frames"}
    assert metadata.pre_parse_json({"source": "x", "num_frames": 1}) == {"source": "x", "num_frames": 1}
    assert isinstance(metadata.output_schema, dict | None)
    metadata.output_schema = {"type": "object", "properties": {}}  # the contract replaces it with a lean one
    assert tool.fn_metadata.output_schema == {"type": "object", "properties": {}}
    assert isinstance(tool.parameters, dict)
