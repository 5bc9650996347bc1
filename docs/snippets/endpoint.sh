#!/bin/sh
# On the machine that runs the MCP server: the model runs on the engine at ENDPOINT (vLLM, SGLang, transformers
# serve, ...); the key comes from the environment only, never a flag.
export LLAVA_VIDEO_MCP_API_KEY="$VLLM_API_KEY"
exec llava-video-mcp --endpoint "${ENDPOINT:-http://gpu-box:8000/v1}"
