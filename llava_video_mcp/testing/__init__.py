"""What the tests, the benchmarks and `llava-video-mcp selftest` make for themselves, kept out of the product's
stages: tiny models of the real architectures (random weights, the real token layouts) saved as hub checkpoints are,
and small videos made in code.

    tiny_llava.py    llava-interleave and LLaVA-OneVision (tiny, or full size for the benchmarks)
    tiny_qwen.py     Qwen2-VL, Qwen2.5-VL and Qwen3-VL (tiny)
    tiny_whisper.py  Whisper, with its real id layout (tiny, base or large-v3-turbo sizes)
    media.py         a short H.264 video with a cut and a sound track

This package may import `tools/`; nothing in `tools/` or `server/` imports it but the self-test (a layout test holds
both). Importing this package imports neither torch nor transformers: the builders are imported by name.
"""

__all__: list[str] = []
