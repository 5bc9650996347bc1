"""The MCP edge of llava-video-mcp: settings, the MCPServer app and its command line."""
