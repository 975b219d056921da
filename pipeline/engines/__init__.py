"""Inference engines: anything with a batch call that the scheduler can drive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

Req = TypeVar("Req", contravariant=True)
Res = TypeVar("Res", covariant=True)


class Engine(Protocol[Req, Res]):
    """A model that answers a batch of requests at once, in order.

    The scheduler calls ``run_batch`` from its own worker thread, never from the event loop.
    """

    name: str

    def run_batch(self, requests: Sequence[Req]) -> list[Res]: ...
