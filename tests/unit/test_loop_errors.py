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


def test_a_peer_closed_while_aiortc_connects_it_is_no_defect_and_anything_else_still_counts() -> None:
    from aiortc.exceptions import InvalidStateError

    class Peer:  # the shape of aiortc's RTCPeerConnection.__connect failing under a close
        async def __connect(self) -> None:
            raise InvalidStateError("RTCIceTransport is closed")

        async def other(self) -> None:
            raise InvalidStateError("RTCIceTransport is closed")

    def raised(coro: object) -> BaseException:
        with pytest.raises(InvalidStateError) as caught:
            asyncio.run(coro)  # type: ignore[arg-type]
        return caught.value

    seen: list[str] = []
    errors = LoopErrors(None)
    errors.sinks.append(seen.append)
    errors(asyncio.new_event_loop(), {"exception": raised(Peer()._Peer__connect())})  # type: ignore[attr-defined]
    assert seen == []
    errors(asyncio.new_event_loop(), {"exception": raised(Peer().other()), "message": "m"})
    errors(asyncio.new_event_loop(), {"exception": ValueError("RTCIceTransport is closed"), "message": "m"})
    assert seen == ["InvalidStateError", "ValueError"]
