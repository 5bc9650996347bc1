#!/bin/sh
# On the GPU machine: the 7b model on two GPUs, up to 32 frames a call, prefix caching for follow-ups.
vllm serve llava-hf/llava-interleave-qwen-7b-hf \
  --limit-mm-per-prompt '{"image": 32}' \
  --max-model-len 32768 \
  --enable-prefix-caching \
  --enable-prompt-tokens-details \
  --tensor-parallel-size 2 \
  --api-key "$VLLM_API_KEY" \
  --host 0.0.0.0 --port 8000
