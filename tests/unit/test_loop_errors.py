"""Exceptions no task retrieved are counted every time and logged once per kind."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from server.eventloop import LoopErrors, watch


async def fail(kind: type[Exception]) -> None:
    raise kind("lost")


async def test_each_unretrieved_exception_is_counted_and_each_kind_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    seen: list[str] = []
    unwatch = watch(loop, seen.append)
    other: list[str] = []
    unwatch_other = watch(loop, other.append)  # a second app on the same loop counts too
    assert isinstance(loop.get_exception_handler(), LoopErrors)
    with caplog.at_level(logging.DEBUG, logger="server.eventloop"):
        for kind in (AssertionError,) * 5 + (KeyError,):
            task = loop.create_task(fail(kind))
            await asyncio.wait([task])
            del task  # never retrieved: reported when collected
            gc.collect()
    assert seen == ["AssertionError"] * 5 + ["KeyError"] and other == seen
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and errors[0].exc_info is not None
    unwatch_other()
    unwatch()
    assert loop.get_exception_handler() is before
