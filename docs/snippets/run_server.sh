#!/bin/sh
# Install, then run the server on stdio (the first call downloads the model, about 1.7 GB, with progress).
scripts/install.sh && .venv/bin/llava-video-mcp
