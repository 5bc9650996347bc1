#!/bin/sh
# One question from a shell, with the same code, limits and errors as the tools: sh terminal.sh VIDEO
set -e
video="$1"
llava-video-mcp describe "$video" -q "What happens after the goal?" --frames 4
llava-video-mcp compare "$video" "$video" -q "Which one is brighter?" --frames 2
llava-video-mcp moments "$video" -q "the red kite lands" --max-moments 2
llava-video-mcp describe "$video" --frames 2 --return-frames frames --frames-dir seen
