#!/bin/sh
# Serve a team over HTTP: a bearer token, every address of this machine, local files from one folder only.
# PORT and VIDEOS say where; the token is made here unless LLAVA_VIDEO_MCP_AUTH_TOKEN already holds one.
export LLAVA_VIDEO_MCP_AUTH_TOKEN="${LLAVA_VIDEO_MCP_AUTH_TOKEN:-$(openssl rand -hex 32)}"
exec llava-video-mcp --transport http --host 0.0.0.0 --port "${PORT:-8000}" --allow-dir "${VIDEOS:-/srv/videos}"
