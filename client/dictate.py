"""``nova-voice dictate``: speak, and the finals come out on the terminal, in a pipe, or typed into
the focused window.

The microphone (or ``--input FILE`` played in real time) is published over WHIP to a Nova Voice
server; the captions come back on a data channel this client opens. A failed connection is
retried with backoff; a refusal that will not change (no token, unknown room) ends with one
line and exit code 2. Ctrl-C, or the end of the file, stops the audio, waits for the last final,
ends the session with a DELETE and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote, urlencode, urlsplit

import aiohttp

from client.audio import AudioError, DeviceSource, Feed, FeedTrack, FileSource, default_device
from client.keyboard import KeyboardError, PushToTalk, Typist, parse_hotkey
from client.text import Bad, Caption, CleanLog, Message, Once, ServerError, clean, read_message
from client.whip import Backoff, Connection, Refused, Unavailable

log = logging.getLogger("nova-voice.dictate")

LAST_FINAL_TIMEOUT = 10.0  # after the audio stops, for the words still in flight
MAX_PENDING = 64  # utterances waited for at the end, at most
# A connection that ends sooner than this is short-lived; after a few in a row (a server that
# accepts and then drops every session) a connection no longer resets the backoff, so the
# client waits longer each time instead of reconnecting in a tight loop.
STEADY_AFTER = 10.0
SHORT_LIVED_IN_A_ROW = 3
# The server says its status twice a second: three missed in a row, it or the path to it is gone (the
# capture page waits as long; 2.5 s made a gateway SIGKILLed behind a load balancer cost 2.8 s of speech).
SILENT_AFTER = 1.5
GIVE_UP_INPUT = 30.0  # with --input, seconds without any server before the client gives up


@dataclass
class Printer:
    """Finals as lines. On a terminal the partial is rewritten in place on one line; in a pipe
    nothing but the finals, one a line. The server's text is ``clean``: the only escape on the
    terminal is the printer's own line rewrite."""

    out: TextIO
    tty: bool
    width: Callable[[], int] = lambda: shutil.get_terminal_size().columns
    _partial: bool = False

    def partial(self, text: str) -> None:
        if not self.tty:
            return
        text = clean(text)
        room = max(self.width() - 1, 10)
        shown = text if len(text) <= room else "…" + text[-(room - 1) :]
        self.out.write("\r\x1b[2K" + shown)
        self.out.flush()
        self._partial = True

    def final(self, text: str) -> None:
        line = clean(text)  # one final, one line, whatever the text held
        self.out.write(("\r\x1b[2K" if self._partial else "") + line + "\n")
        self.out.flush()
        self._partial = False

    def clear(self) -> None:
        if self._partial:
            self.out.write("\r\x1b[2K")
            self.out.flush()
            self._partial = False


@dataclass
class Captions:
    """What the data channel said, sent on to the printer and the typist.

    Only this session's own captions count: those carrying the public id the server gave it
    (``mine``, from the ``Nova-Publisher`` header). One without a publisher, or any caption when
    the server gave no id, could be anyone's words (or a hostile server's), so none is shown."""

    printer: Printer
    typist: Typist | None = None
    pending: set[int] = field(default_factory=set)  # segments with a partial and no final yet
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    finals: int = 0
    alive: asyncio.Event = field(default_factory=asyncio.Event)  # set by every message
    # This session's public id: in a room where others speak too, only its own words count.
    mine: str | None = None
    once: Once = field(default_factory=lambda: Once(log))

    def own(self, publisher: str | None) -> None:
        """The id of this session's captions, from the WHIP answer (None: the server gave none)."""
        self.mine = publisher
        if publisher is None:
            self.once.warn(
                "no-publisher-id",
                "the server did not say which captions are ours (no Nova-Publisher header): "
                "none will be shown or typed",
            )

    def on_message(self, raw: Any) -> None:
        self.alive.set()
        try:
            self._handle(read_message(raw))
        except Exception as exc:  # raised here, it would end the data channel: a reconnect loop
            self.once.warn(
                "handler", "could not use a message from the server (%s): skipped", type(exc).__name__
            )

    def _handle(self, msg: Message) -> None:
        if isinstance(msg, Bad):
            self.once.warn(msg.kind, "ignoring %s (said once)", msg.why)
            return
        if isinstance(msg, ServerError):
            log.warning("server: %s", msg.text)
            return
        if not isinstance(msg, Caption) or msg.translated:
            return  # statuses, settings; translations of the captions
        if self.mine is None or msg.publisher is None:
            if msg.publisher is None:
                self.once.warn("caption.no-publisher", "ignoring captions that do not say whose they are")
            return
        if msg.publisher != self.mine:
            return  # another speaker's
        text = clean(msg.text)
        if msg.final:
            self.pending.discard(msg.segment)
            if text:
                self.finals += 1
                self.printer.final(text)
                if self.typist is not None:
                    self.typist.type(text, msg.lang)
        elif text:
            if len(self.pending) >= MAX_PENDING:
                self.pending.discard(min(self.pending))  # a server that never finalises: bounded
            self.pending.add(msg.segment)
            self.printer.partial(text)
        self.changed.set()

    async def settled(self, timeout: float) -> None:
        """Until no utterance waits for its final, ``timeout`` at most."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pending and loop.time() < deadline:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), deadline - loop.time())
            except TimeoutError:
                break


class Dictation:
    def __init__(self, args: argparse.Namespace, feed: Feed, captions: Captions) -> None:
        self.args, self.feed, self.captions = args, feed, captions
        self.once = captions.once
        self.stop = asyncio.Event()
        self.hurry = asyncio.Event()
        base = args.server.rstrip("/")
        self.server = base
        # A file has an end: with nobody to hear it, the client stops rather than wait for ever.
        self.give_up = args.give_up if args.give_up is not None else (GIVE_UP_INPUT if args.input else 0.0)
        query = {k: v for k, v in (("speaker", args.speaker), ("lang", args.lang)) if v}
        self.url = f"{base}/whip/{quote(args.room, safe='')}" + (f"?{urlencode(query)}" if query else "")
        self.headers = {"Content-Type": "application/sdp"}
        if args.token:
            self.headers["Authorization"] = f"Bearer {args.token}"

    def interrupt(self) -> None:
        if self.stop.is_set():
            self.hurry.set()  # a second Ctrl-C: do not wait for the last final
        self.stop.set()

    async def run(self) -> int:
        backoff = Backoff()
        short_lived = 0
        loop = asyncio.get_running_loop()
        reachable = loop.time()  # since when no server has answered (start, or the last connection)
        failures = 0
        async with aiohttp.ClientSession() as http:
            while not self.stop.is_set():
                conn = Connection(http, self.url, self.headers, self.args.room, self.once)
                opened = conn.open(FeedTrack(self.feed), self.captions.on_message, self.captions.own)
                try:
                    await first(opened, self.stop.wait())
                except Refused as exc:
                    await conn.close(delete=False)
                    print(f"nova-voice dictate: {clean(str(exc))}", file=sys.stderr)
                    return 2
                except Unavailable as exc:
                    await conn.close()
                    failures += 1
                    delay = min(backoff.cap, max(backoff.next(), exc.retry_after))
                    waited = loop.time() - reachable
                    if self.give_up and waited >= self.give_up:
                        print(
                            f"nova-voice dictate: no Nova Voice server answered at {self.server} for "
                            f"{waited:.0f} s ({clean(str(exc))}); giving up. Is it running? "
                            "Pass --server URL (or set NOVA_SERVER) for another one",
                            file=sys.stderr,
                        )
                        return 2
                    if self.give_up:
                        delay = min(delay, self.give_up - waited)  # one last try at the deadline
                    if failures == 1:
                        # The first time, say which server and how to pick another: a user who
                        # never started one, or whose server is elsewhere, learns it at once.
                        log.warning(
                            "%s: is a Nova Voice server running at %s? Pass --server URL (or set "
                            "NOVA_SERVER) for another one; retrying in %.1f s",
                            exc,
                            self.server,
                            delay,
                        )
                    else:
                        log.warning("%s; retrying in %.1f s", exc, delay)
                    await first(asyncio.sleep(delay), self.stop.wait())
                    continue
                if not conn.up.is_set():  # stopped while connecting
                    await conn.close()
                    break
                connected_at = asyncio.get_running_loop().time()
                if short_lived < SHORT_LIVED_IN_A_ROW:
                    backoff.reset()
                log.info("connected: speaking into room %r", self.args.room)
                await first(conn.down.wait(), self.stop.wait(), self.feed.ended.wait(), self.silence(conn))
                lasted = asyncio.get_running_loop().time() - connected_at
                short_lived = short_lived + 1 if lasted < STEADY_AFTER else 0
                if conn.down.is_set() and not self.stop.is_set():
                    self.captions.pending.clear()  # that utterance went with the connection
                    self.captions.printer.clear()
                    log.warning("connection lost; reconnecting")
                    reachable = loop.time()
                    await conn.close()
                    await first(asyncio.sleep(backoff.next()), self.stop.wait())
                    continue
                await self.finish(conn)
                break
        return 0

    async def silence(self, conn: Connection) -> None:
        """Returns once the server has said nothing for SILENT_AFTER seconds (no heartbeat: it or
        the path to it is gone, long before ICE would tell), marking the connection down."""
        while True:
            self.captions.alive.clear()
            try:
                await asyncio.wait_for(self.captions.alive.wait(), SILENT_AFTER)
            except TimeoutError:
                conn.down.set()
                return

    async def finish(self, conn: Connection) -> None:
        """No more audio: let the last utterance end in silence, wait for its final, DELETE."""
        if not self.feed.ended.is_set():
            self.feed.mute()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LAST_FINAL_TIMEOUT

        async def last_final() -> None:
            await self.feed.tail_sent.wait()
            await self.captions.settled(max(0.0, deadline - loop.time()))

        await first(last_final(), self.hurry.wait(), conn.down.wait(), asyncio.sleep(LAST_FINAL_TIMEOUT + 2))
        await conn.close()


async def first(*aws: Any) -> None:
    """Until the first of these finishes; the others are cancelled. Its exception is raised."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in done:
        if not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nova-voice dictate",
        description="Speak into a Nova Voice server: finals on the terminal, in a pipe, or typed.",
    )
    env = os.environ.get
    p.add_argument(
        "--server",
        default=env("NOVA_SERVER", "http://127.0.0.1:8080"),
        help="server URL (env NOVA_SERVER, default http://127.0.0.1:8080)",
    )
    p.add_argument(
        "--room",
        default=env("NOVA_ROOM", "dictate"),
        help="room to speak into (env NOVA_ROOM, default dictate)",
    )
    p.add_argument(
        "--token", default=env("NOVA_PUBLISH_TOKEN", ""), help="publish token (env NOVA_PUBLISH_TOKEN)"
    )
    p.add_argument("--speaker", default="", help="your name in the room's captions and transcript")
    p.add_argument("--lang", default="", help="the language spoken, e.g. en (default: the room's)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--device", default="", help=f"microphone as FORMAT:NAME (default {default_device()})")
    src.add_argument("--input", metavar="FILE", help="play this file (any format PyAV reads) instead")
    p.add_argument("--type", action="store_true", help="type each final into the focused window")
    p.add_argument(
        "--newlines",
        action="store_true",
        help="with --type: the spoken 'new line' and 'new paragraph' press Enter (else typed as words)",
    )
    p.add_argument(
        "--hotkey", default="", help="push-to-talk: heard only while held, e.g. <ctrl>+<alt>+space"
    )
    p.add_argument(
        "--give-up",
        type=float,
        default=None,
        metavar="S",
        help=f"stop with exit code 2 after S seconds without a server (default {GIVE_UP_INPUT:.0f} "
        "with --input, never for a microphone; 0: never)",
    )
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="nova-voice dictate: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(CleanLog())  # a log line can carry the server's words to the terminal
    log.setLevel(logging.INFO)
    if urlsplit(args.server).scheme not in ("http", "https") or not urlsplit(args.server).netloc:
        print(f"nova-voice dictate: --server takes an http(s) URL; got {args.server!r}", file=sys.stderr)
        return 2
    if args.newlines and not args.type:
        print("nova-voice dictate: --newlines goes with --type (it presses Enter)", file=sys.stderr)
        return 2
    try:
        hotkey = parse_hotkey(args.hotkey) if args.hotkey else ""
    except ValueError as exc:
        print(f"nova-voice dictate: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(dictate(args, hotkey))


async def dictate(args: argparse.Namespace, hotkey: str) -> int:
    source: FileSource | DeviceSource | None = None
    hold: PushToTalk | None = None
    try:
        source = FileSource(args.input) if args.input else DeviceSource(args.device or default_device())
        hold = PushToTalk(hotkey) if hotkey else None
        typist = Typist(hold, newlines=args.newlines) if args.type else None
        if hold is not None:
            hold.start()
    except (KeyboardError, AudioError) as exc:
        if source is not None:
            source.close()
        print(f"nova-voice dictate: {exc}", file=sys.stderr)
        return 2
    if hold is not None:
        log.info("hold %s to speak", hotkey)
    captions = Captions(Printer(sys.stdout, sys.stdout.isatty()), typist)
    session = Dictation(args, Feed(source, hold), captions)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, session.interrupt)
    try:
        code = await session.run()
        if typist is not None:
            await typist.drain(LAST_FINAL_TIMEOUT)
    finally:
        captions.printer.clear()
        if hold is not None:
            hold.stop()
        source.close()
    if code == 0 and isinstance(source, DeviceSource) and source.error:
        print(f"nova-voice dictate: {source.error}", file=sys.stderr)
        return 2
    return code
