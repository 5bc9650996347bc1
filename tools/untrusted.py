"""Text from strangers (questions, titles, subtitles) on its way into a prompt: it stays text.

A chat template turns the prompt into one string that the tokenizer reads again, and the tokenizer reads the
spelling of a special token (`<|im_end|>`, `<|im_start|>`, `<image>`) as that token wherever it appears. So a
question, or a video's captions, could end the user's turn and write the assistant's, or add image slots the
frames do not fill. Every spelling of a special token in untrusted text is broken with an invisible WORD JOINER
(U+2060) after its first character: it then reads as ordinary characters, and means nothing to the tokenizer.

Control characters are dropped too (they carry nothing a question needs), and a question has a length limit, so
a megabyte of text is refused at once instead of being tokenised and then found too long.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from llava_video_mcp.tools.errors import LimitError
from llava_video_mcp.tools.limits import MAX_QUESTION_CHARS

MAX_TITLE_CHARS = 200
"""Site titles can be any length (a page's <title> of 100 KB); naming the video needs a line."""

JOINER = "\u2060"
GENERIC_MARKERS = re.compile(r"<\|[^<>|\s]{1,64}\|>|</?(?:image|video|s|unk|pad)>|\[/?INST\]|<<SYS>>|<</SYS>>")
"""Special-token spellings of llava-interleave's Qwen tokenizer and its relatives, for when the tokenizer itself
is not at hand (a remote engine): `<|...|>` tokens, image and video slots, and Llama-style markers."""

_KEPT_CONTROLS = {"\n", "\t"}
_TERMINAL_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def without_controls(text: str) -> str:
    """The text without terminal escape sequences, control characters (line breaks and tabs stay) or format
    characters such as U+200B."""
    text = _TERMINAL_ESCAPES.sub("", text)
    return "".join(ch for ch in text if ch in _KEPT_CONTROLS or unicodedata.category(ch) not in ("Cc", "Cf"))


def clean_question(question: str | None) -> str | None:
    """The question to ask, None when nothing is left of it; refuses one longer than MAX_QUESTION_CHARS."""
    if question is None:
        return None
    if len(question) > MAX_QUESTION_CHARS:
        raise LimitError(
            f"The question is {len(question):,} characters long; at most {MAX_QUESTION_CHARS:,} are accepted. Ask a "
            "shorter question (the video itself is what the model reads, not a long text)."
        )
    text = without_controls(question).strip()
    return text or None


def neutralise(text: str, special_tokens: Iterable[str] = ()) -> str:
    """The text with every special-token spelling broken, so that no tokenizer reads it as a control token."""
    spellings = sorted({t for t in special_tokens if len(t) > 1}, key=len, reverse=True)
    pattern = GENERIC_MARKERS.pattern
    if spellings:
        pattern = "|".join(re.escape(t) for t in spellings) + "|" + pattern
    return re.sub(pattern, lambda found: found[0][0] + JOINER + found[0][1:], without_controls(text))


def short_title(title: str | None) -> str | None:
    """A title as every result and prompt shows it: control characters dropped, white space collapsed, cut to
    MAX_TITLE_CHARS; None when nothing is left."""
    if title is None:
        return None
    text = " ".join(without_controls(title[: MAX_TITLE_CHARS * 4]).split())
    if len(text) > MAX_TITLE_CHARS:
        text = text[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    return text or None
