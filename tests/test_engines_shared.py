"""What the vision backend and the speech engine share: `Lazy` (brought up once, a failure remembered as a policy
says), the OpenAI-compatible client of `engine.py`, and the registry of speech engines by name."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from llava_video_mcp.tools.backends.lazy import Lazy
from llava_video_mcp.tools.errors import ModelError
from llava_video_mcp.tools.progress import DownloadProgress


class Thing:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_calls_that_arrive_together_share_one_bring_up() -> None:
    started, release = threading.Event(), threading.Event()
    made: list[Thing] = []

    def bring_up(on_download: DownloadProgress | None) -> Thing:
        started.set()
        assert release.wait(10)
        made.append(Thing())
        return made[-1]

    lazy: Lazy[Thing] = Lazy(bring_up)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(lazy.get)
        assert started.wait(10)
        others = [pool.submit(lazy.get) for _ in range(3)]
        release.set()
        got = [first.result(10)[0], *(other.result(10)[0] for other in others)]
    assert len(made) == 1
    assert all(thing is made[0] for thing in got)
    assert lazy.loaded is made[0]
    lazy.close()
    assert made[0].closed
    assert lazy.loaded is None


def test_a_failure_is_remembered_while_its_key_holds_and_retold_as_the_policy_says() -> None:
    key = ["folder:a"]
    tries: list[str] = []

    def bring_up(on_download: DownloadProgress | None) -> Thing:
        tries.append(key[0])
        raise ModelError(f"cannot load {key[0]}")

    lazy: Lazy[Thing] = Lazy(
        bring_up,
        remember=lambda error, at: math.inf if at.startswith("folder:") else 0.0,
        key=lambda: key[0],
        retold=lambda error, waited_s, left_s: ModelError(f"{error} (remembered)"),
    )
    with pytest.raises(ModelError, match=r"^cannot load folder:a$"):
        lazy.get()
    with pytest.raises(ModelError, match=r"^cannot load folder:a \(remembered\)$"):
        lazy.get()
    assert tries == ["folder:a"]
    key[0] = "folder:b"  # what the folder holds changed: tried at once
    with pytest.raises(ModelError, match=r"^cannot load folder:b$"):
        lazy.get()
    key[0] = "hub"  # not remembered at all
    for _ in range(2):
        with pytest.raises(ModelError, match=r"^cannot load hub$"):
            lazy.get()
    assert tries == ["folder:a", "folder:b", "hub", "hub"]


def test_by_default_every_call_tries_again() -> None:
    outcomes: list[Thing | ModelError] = [ModelError("down"), Thing()]

    def bring_up(on_download: DownloadProgress | None) -> Thing:
        outcome = outcomes.pop(0)
        if isinstance(outcome, ModelError):
            raise outcome
        return outcome

    lazy: Lazy[Thing] = Lazy(bring_up)
    with pytest.raises(ModelError, match="down"):
        lazy.get()
    thing, seconds = lazy.get()
    assert isinstance(thing, Thing)
    assert seconds >= 0.0
    assert lazy.get() == (thing, 0.0)
