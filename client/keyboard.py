"""``nova-voice dictate --type`` and ``--hotkey``: finals typed into the focused window, and a
push-to-talk key held while speaking, both through pynput (X11, macOS, Windows)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from client.text import Enter, Position, is_plain, typing_plan

log = logging.getLogger("nova-voice.dictate")

# pynput's Key names (its X11, macOS and Windows backends share them), with the left-hand aliases.
KEY_NAMES = frozenset(
    "alt alt_l alt_r alt_gr backspace caps_lock cmd cmd_l cmd_r ctrl ctrl_l ctrl_r delete down end "
    "enter esc home left page_down page_up right shift shift_l shift_r space tab up insert menu "
    "num_lock pause print_screen scroll_lock".split()
    + [f"f{i}" for i in range(1, 21)]
)
ALIASES = {"control": "ctrl", "option": "alt", "super": "cmd", "win": "cmd", "meta": "cmd", "return": "enter"}


class KeyboardError(Exception):
    """pynput is missing or has no desktop to talk to; said in one line, exit code 2."""


def parse_hotkey(text: str) -> str:
    """A push-to-talk combination in pynput's HotKey syntax, ``<ctrl>+<alt>+<space>``.

    Names may come without brackets (``ctrl+alt+space``) and in any case; a single character
    is that key. Raises ValueError naming the part it does not know."""
    parts = [p.strip() for p in text.split("+")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"a hotkey is keys joined by '+', e.g. <ctrl>+<alt>+space; got {text!r}")
    keys = []
    for part in parts:
        if len(part) == 1:
            keys.append(part.lower())
            continue
        name = part[1:-1] if part.startswith("<") and part.endswith(">") else part
        name = ALIASES.get(name.lower(), name.lower())
        if name not in KEY_NAMES:
            raise ValueError(f"unknown key {part!r} in hotkey {text!r}")
        keys.append(f"<{name}>")
    if len(set(keys)) != len(keys):
        raise ValueError(f"hotkey {text!r} names a key twice")
    return "+".join(keys)


def keyboard() -> Any:
    """pynput's keyboard module, or a one-line reason why it cannot be had."""
    try:
        from pynput import keyboard as kb
    except ModuleNotFoundError as exc:
        raise KeyboardError("--type and --hotkey need pynput: pip install 'nova-voice[dictate]'") from exc
    except ImportError as exc:  # pynput says why its backend failed over several lines
        reason = " ".join(str(exc).split())
        raise KeyboardError(f"--type and --hotkey need a desktop session (X11 DISPLAY): {reason}") from exc
    return kb


class Typist:
    """Types finals in order into whatever window has the focus: a space between two finals.

    It types text, never keys: the server chooses the words, and pynput would turn a ``\\n`` or
    ``\\t`` in them into Enter or Tab (in a terminal, Enter runs what came before). So a final
    is typed as ``typing_plan`` says: printable characters and spaces, and Enter only for a
    spoken "new line"/"new paragraph" when ``newlines`` is on. No other key, ever.

    Typing blocks (pynput sends key by key), so it runs in a thread, one final after the other.
    While push-to-talk keys are held it waits for their release: typed with Ctrl held, a final
    would turn into shortcuts."""

    def __init__(self, hold: PushToTalk | None = None, newlines: bool = False) -> None:
        kb = keyboard()
        self._controller = kb.Controller()
        self._enter = kb.Key.enter
        self._hold = hold
        self._newlines = newlines
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._position = Position.START
        self._task: asyncio.Task[None] | None = None

    def type(self, text: str, lang: str = "") -> None:
        """Type a final (``lang``: its language, for the spoken commands)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._queue.put_nowait((text, lang))

    async def _run(self) -> None:
        while True:
            text, lang = await self._queue.get()
            plan, self._position = typing_plan(text, lang, self._newlines, self._position)
            if self._hold is not None:
                await asyncio.to_thread(self._hold.released.wait)
            await asyncio.to_thread(self._type, plan)
            self._queue.task_done()

    def _type(self, plan: list[str | Enter]) -> None:
        for step in plan:
            if isinstance(step, Enter):
                for _ in range(step.times):
                    self._controller.press(self._enter)
                    self._controller.release(self._enter)
            elif is_plain(step):  # always, by typing_plan; checked again where keys are made
                try:
                    self._controller.type(step)
                except self._controller.InvalidCharacterException as exc:
                    log.warning("could not type %s", exc)

    async def drain(self, timeout: float) -> None:
        """Until every final so far has been typed (bounded)."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("gave up typing after %.0f s: is a key still held?", timeout)
        finally:
            self._task.cancel()


class PushToTalk:
    """Audio is heard only while every key of the combination is held (``held``)."""

    def __init__(self, combination: str) -> None:
        kb = keyboard()
        self._keys = set(kb.HotKey.parse(combination))
        self._pressed: set[Any] = set()
        self.held = False
        self.released = threading.Event()
        self.released.set()
        self._listener = kb.Listener(on_press=self._press, on_release=self._release)

    def _press(self, key: Any) -> None:
        self._pressed.add(self._listener.canonical(key))
        self._update()

    def _release(self, key: Any) -> None:
        self._pressed.discard(self._listener.canonical(key))
        self._update()

    def _update(self) -> None:
        self.held = self._keys <= self._pressed
        if self.held:
            self.released.clear()
        elif not (self._keys & self._pressed):
            self.released.set()  # every key of it up: typing is safe again

    def start(self, timeout: float = 5.0) -> None:
        self._listener.start()
        ready = threading.Thread(target=self._listener.wait, daemon=True)  # pynput's wait has no timeout
        ready.start()
        ready.join(timeout)
        if ready.is_alive() or not self._listener.is_alive():
            self._listener.stop()
            raise KeyboardError(
                "the push-to-talk key listener did not start (it needs X11's RECORD extension; "
                "under Wayland it hears keys only in X11 windows)"
            )

    def stop(self) -> None:
        self._listener.stop()
        self.released.set()
