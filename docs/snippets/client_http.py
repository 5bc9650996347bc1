"""Ask a llava-video-mcp served over HTTP, with its bearer token.

LLAVA_VIDEO_MCP_AUTH_TOKEN=... python client_http.py http://HOST:8000/mcp VIDEO
"""

import os
import sys

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, video: str) -> str:
    """The answer; SystemExit with one line when there is none (sys.exit inside the session would end in a
    traceback of its task group)."""
    token = os.environ.get("LLAVA_VIDEO_MCP_AUTH_TOKEN")
    if not token:
        sys.exit("Set LLAVA_VIDEO_MCP_AUTH_TOKEN to the token the server was started with.")
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=300)
    # The server answers 401 to a wrong token: ask once, plainly, before the MCP session starts.
    async with http:
        refused = await http.post(url, json={}, headers={"Accept": "application/json, text/event-stream"})
        if refused.status_code == 401:
            sys.exit(f"{url} refused the token (401): use the one the server was started with.")
        async with Client(streamable_http_client(url, http_client=http)) as client:
            result = await client.call_tool("describe_video", {"source": video, "num_frames": 4, "max_new_tokens": 32})
    if result.is_error:
        sys.exit(f"describe_video refused: {result.content[0].text}")
    return str((result.structured_content or {})["answer"])


if __name__ == "__main__":
    print("answer:", anyio.run(main, sys.argv[1], sys.argv[2]))
