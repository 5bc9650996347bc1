"""Ask llava-video-mcp about a video over stdio, as an MCP host does.

python client_stdio.py VIDEO [SERVER FLAGS...]      e.g. python client_stdio.py clip.mp4 --asr-model none
"""

import shutil
import sys

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main(video: str, flags: list[str]) -> None:
    # Hosts start servers with their own PATH: give the absolute path (.venv/bin/llava-video-mcp) where it differs.
    command = shutil.which("llava-video-mcp") or sys.exit("llava-video-mcp is not on PATH; give its absolute path.")
    server = StdioServerParameters(command=command, args=flags)
    async with Client(stdio_client(server)) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(tool.name for tool in tools.tools))
        result = await client.call_tool(
            "describe_video", {"source": video, "question": "What moves?", "num_frames": 4, "max_new_tokens": 32}
        )
    if result.is_error:  # said once the session is closed: sys.exit inside it ends in its task group's traceback
        sys.exit(f"describe_video refused: {result.content[0].text}")
    answer = result.structured_content or {}
    print("answer:", answer["answer"])
    print("frames at:", [frame["timestamp_s"] for frame in answer["videos"][0]["frames"]])


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2:])
