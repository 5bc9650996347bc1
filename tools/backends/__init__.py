"""Model backends behind one small protocol (`base.VideoLanguageBackend`).

    base.py          Prompt, Generation, the protocol, ModelProvider; imports no implementation
    turns.py         how many calls a backend runs at once, and the queue in front of it
    loader.py        picks the local or the remote backend from the settings, loads it once
    transformers.py  in process: llava through transformers, with devices.py, prefix_cache.py and attention.py
    remote.py        an OpenAI-compatible serving engine (vLLM, SGLang, `transformers serve`) over HTTP

Importing this package, `base`, `turns` or `remote` imports neither torch nor transformers.
"""
