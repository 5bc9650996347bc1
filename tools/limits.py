"""The limits of one call, in one place the tools, the terminal commands and the pipeline all read. A module of
numbers only, so a command line can be checked against them without importing the pipeline."""

MAX_FRAMES = 32
"""Frames in one model context (one call's sampling, or one window's)."""
MIN_VIDEOS, MAX_VIDEOS = 2, 4
"""Videos compare_videos takes."""
MAX_MOMENTS = 10
"""Moments find_moments returns at most."""
MAX_NEW_TOKENS = 4096
"""The longest answer a call may ask for."""
MAX_QUESTION_CHARS = 8000
"""The longest question (or query), in characters: about 2,000 tokens, far more than any question needs, far less
than the context the frames need."""
MIN_RETURNED_SIDE, MAX_RETURNED_SIDE = 64, 1920
"""The long side, in pixels, a call may ask its returned frames at (`frame_max_side`): 1920 holds a 1080p frame
whole, as the on-screen text track reads it; a 4K frame is decoded down to it."""
MAX_SCREEN_FRAMES = 40
"""Frames a call reads on screen in one video, at most (--ocr-max-frames; see tracks.on_screen)."""
