"""`python -m llava_video_mcp`: the same as the `llava-video-mcp` command."""

from llava_video_mcp.server.cli import main

if __name__ == "__main__":
    main()
