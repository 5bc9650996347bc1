"""Stage 1, source -> local file: a local path checked against the allowed folders, or a URL downloaded by yt-dlp
(never a subprocess) into the cache, under guards on every connection. A video (`LocalVideo`) or, with
`fetch_media`, a still image (`LocalImage`), told apart by the frames stage from the file's content.

    sources   resolving a source: checks as text, allowed folders, the duration limit, sidecar subtitles
    cache     the download cache: entries written whole, aliases, eviction, damage noticed, staging cleaned
    ytdlp     yt-dlp behind one typed module: its options, its hooks, its errors, what it may read and fetch
    netguard  guards on the connections a download makes: public addresses only, http(s) only, cut on demand
"""

from llava_video_mcp.tools.media.cache import remove_own_staging
from llava_video_mcp.tools.media.sources import (
    FetchPolicy,
    ImageFacts,
    Inspect,
    InspectImage,
    LocalImage,
    LocalMedia,
    LocalVideo,
    Needs,
    VideoFetcher,
    checked_source,
    default_cache_dir,
    not_a_video,
)
from llava_video_mcp.tools.media.ytdlp import ProgressHook

__all__ = [
    "FetchPolicy",
    "ImageFacts",
    "Inspect",
    "InspectImage",
    "LocalImage",
    "LocalMedia",
    "LocalVideo",
    "Needs",
    "ProgressHook",
    "VideoFetcher",
    "checked_source",
    "default_cache_dir",
    "not_a_video",
    "remove_own_staging",
]
