#!/bin/sh
# Register the server with Claude Code for every project (--scope user), by its absolute path.
claude mcp add --scope user llava-video -- "$PWD/.venv/bin/llava-video-mcp"
