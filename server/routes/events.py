"""``GET /rooms/{room}/events``: the room's captions as Server-Sent Events, for tools that read
a feed without WebRTC (vMix, CasparCG, scripts, networks that block WebRTC) and for the
overlay's fallback. The same messages as a viewer's data channel (captions, status as the
heartbeat twice a second), the same ``?lang=``, ``?backlog=`` and view-token rules and the
room's viewer limit. Each caption's SSE id is its room ``seq``; a client that reconnects with
``Last-Event-ID`` gets every kept caption numbered after it, so nothing is repeated and, within
the room's backlog, nothing is missed."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import uuid

from aiohttp import web

from server.edge.guard import client_of, spare_descriptors
from server.edge.http import error
from server.routes.access import require_view
from server.routes.viewers import backlog_seconds, planned_room, room_name, viewer_stream, watched_room
from server.state import STATE

log = logging.getLogger(__name__)

# Messages waiting for a slow reader before it is dropped (it may reconnect and resume).
QUEUE = 512
# A reader that hears nothing this long (no heartbeat either) is closed: the room went away.
SILENCE_S = 5.0
# A reader that does not take an event within this long is cut off (its socket's buffers are
# full: it stopped reading), instead of holding a viewer slot and a task for ever.
WRITE_S = 10.0
LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")
# How long a reader waits before it reconnects (EventSource's ``retry``), drawn per feed: the
# readers of a gateway that dies come back to another spread over three seconds, not all in the
# same instant (bench/results/fanout.md: 1,000 readers of one room).
RETRY_MS = (1000, 4000)


class FeedListener:
    """A room listener that queues messages for one feed; overflow ends the feed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(QUEUE)
        self.overflowed = False

    def send(self, message: str) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            raise  # the room drops this listener


def last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if raw is None or raw == "":
        return None
    if not LAST_EVENT_ID.fullmatch(raw):  # ASCII digits: str.isdigit() also takes "²"
        raise error(400, "bad_last_event_id", "Last-Event-ID is the id (a number) of the last event received")
    return int(raw)


# A caption's JSON starts {"type":"caption","room":"<name>","seq":N (messages.py's field order;
# room names hold no quotes), so its seq is read off the text the room already serialised.
CAPTION_SEQ = re.compile(r'\{"type":"caption","room":"[^"]*","seq":(\d+)')


def frame(message: str) -> bytes:
    """One SSE event: captions carry their room seq as the id, status messages none."""
    seq = CAPTION_SEQ.match(message)
    head = f"id: {seq.group(1)}\n" if seq else ""
    return (head + f"data: {message}\n\n").encode()


async def room_events(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    name = room_name(request)
    record = await require_view(request, name)
    max_age = backlog_seconds(request)
    lang = viewer_stream(state, planned_room(state, record), request.query.get("lang"))
    after = last_event_id(request)
    spare_descriptors(request)
    client = client_of(request)
    room = await watched_room(state, record, client)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must not hold events back
        }
    )
    key = "feed-" + uuid.uuid4().hex
    listener = FeedListener()
    # Replayed and subscribed with no await in between: nothing falls between the two.
    first = [m.to_json() for m in room.replay_messages(max_age, lang, after)]
    room.add_viewer(key, client)
    room.listen(key, listener, lang)
    state.metrics.viewers.inc()
    try:
        await response.prepare(request)
        async with asyncio.timeout(WRITE_S):
            retry = random.randint(*RETRY_MS)
            await response.write(f"retry: {retry}\n\n".encode() + b"".join(frame(m) for m in first))
        while not listener.overflowed:
            try:
                message = await asyncio.wait_for(listener.queue.get(), SILENCE_S)
            except TimeoutError:
                break
            async with asyncio.timeout(WRITE_S):
                await response.write(frame(message))
    except ConnectionResetError:
        pass  # the reader went away (a cancel, at shutdown, goes on up after the cleanup)
    except TimeoutError:
        log.info("feed of room %s: the reader stopped reading; closed", room.name)
    finally:
        room.remove_viewer(key)
        room.unlisten(key)
        state.metrics.viewers.dec()
        state.rooms.forget_if_idle(room.name)
    return response


def routes() -> list[web.RouteDef]:
    return [web.get("/rooms/{room}/events", room_events)]
