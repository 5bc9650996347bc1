"""The errors a video call can meet, one class per stage.

Every message says what was wrong and what the caller can change, because it is read by an agent that
has to decide its next call from it alone.

    VideoToolError                 root: anything the caller can act on
    ├── SourceError                the source was rejected before any work (missing file, bad scheme)
    ├── DownloadError              fetching a URL failed (unreachable, HTTP error, unsupported site)
    ├── LimitError                 an argument is outside what the call allows (frame count, time range)
    ├── DecodeError                the file is not a video, or no frames could be decoded
    └── ModelError                 the model could not be loaded or failed while generating

Each error also says whether the same call may succeed if simply tried again (`retryable`): a network hiccup
or a busy engine may pass; a missing file or an argument out of range will not.

Anything else that escapes a tool is a bug: the server logs it with its traceback and the client sees
only that the tool failed.
"""

from __future__ import annotations


class VideoToolError(Exception):
    """A failure the caller can act on; its message is shown to the agent as is."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        """Whether the same call may succeed when tried again later (a transient failure)."""


class SourceError(VideoToolError):
    """The source is not something this server can read (no such file, unsupported scheme)."""


class DownloadError(VideoToolError):
    """Fetching a URL failed: the host was unreachable, answered with an error, or the site is unsupported."""


class LimitError(VideoToolError):
    """An argument is outside what the call or the video allows."""


class DecodeError(VideoToolError):
    """The file could not be read as a video, or its video stream yielded no frames."""


class ModelError(VideoToolError):
    """The model could not be loaded, or generation failed."""
