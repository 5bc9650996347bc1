"""llava-video-mcp: an MCP server that gives LLM agents eyes for video.

Installed, everything lives under this one name: `llava_video_mcp.tools` (the capabilities, by stage, no MCP in
them) and `llava_video_mcp.server` (the edge: the MCP app, settings, the command line). In the repository they are
the top-level folders `tools/` and `server/`; `server` and `tools` here link to them, so that the repository reads as
the installed package does (pyproject.toml maps the same folders for wheels).
"""
