"""Apertium, rule-based: one long-running pipeline per language pair, fed lines in null-flush mode.

``apertium -u eng-spa`` starts about ten processes per call, and its plain-text wrapper does
not flush on NUL; so the pair's mode file is expanded once with ``apertium-wblank-mode -z``
(every stage in null-flush mode) and kept running. Each line goes in escaped for Apertium's
stream format and followed by ``\\n\\0`` (the analyser emits a sentence's last token only once
it sees the blank after it); its translation is everything up to the next NUL. A pair that
does not answer in time is killed and started again on the next line; so is one that died.
"""

from __future__ import annotations

import logging
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.languages import ISO3, UnknownLanguage, normalize
from pipeline.types import TranslateRequest, Translation

log = logging.getLogger(__name__)

_SPECIAL = re.compile(r"([\\\[\]^$/@<>{}])")
_ESCAPED = re.compile(r"\\(.)")


class ApertiumError(RuntimeError):
    """A pair could not start, died, or did not answer in time."""


@dataclass(frozen=True)
class ApertiumConfig:
    """Where the pairs are, and how long a batch of lines may take before the pair restarts.

    timeout: seconds a batch may take (plus 0.1 s per line); the pipeline answers a caption
        in a few milliseconds, so this only ever fires on a hung process.
    """

    modes_dir: str = "/usr/share/apertium/modes"
    timeout: float = 5.0
    mark_unknown: bool = False


def escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", " ".join(text.split()))


def unescape(text: str) -> str:
    return " ".join(_ESCAPED.sub(r"\1", text).split())


def available_pairs(modes_dir: str) -> dict[tuple[str, str], Path]:
    """Installed pairs by ISO 639-1 codes: ``{("en", "es"): .../eng-spa.mode}``."""
    back = {v: k for k, v in ISO3.items()}
    pairs: dict[tuple[str, str], Path] = {}
    folder = Path(modes_dir)
    if not folder.is_dir():
        return pairs
    for mode in sorted(folder.glob("*.mode")):
        parts = mode.stem.split("-")
        if len(parts) == 2 and parts[0] in back and parts[1] in back:
            pairs[(back[parts[0]], back[parts[1]])] = mode
    return pairs


class _Pipe:
    """One running pair: a process group whose stdin takes lines and stdout gives translations."""

    def __init__(self, mode: Path, mark_unknown: bool) -> None:
        script = subprocess.run(
            ["apertium-wblank-mode", "-z", str(mode)], check=True, capture_output=True, text=True
        ).stdout
        # $1 is the generator's flag (-n: unknown words unmarked, -g: marked with *), $2 the tagger's.
        self.proc = subprocess.Popen(
            ["bash", "-c", script, "apertium", "-g" if mark_unknown else "-n", ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so a hang is ended as a whole
        )
        self._buf = b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()

    def translate(self, lines: Sequence[str], timeout: float) -> list[str]:
        """Writes and reads side by side, so a long batch never fills both pipes and stalls."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        payload = b"".join(escape(line).encode() + b"\n\0" for line in lines)
        out_fd, in_fd = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        os.set_blocking(in_fd, False)
        results: list[str] = []
        allowed = timeout + 0.1 * len(lines)
        deadline = time.monotonic() + allowed
        while len(results) < len(lines):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApertiumError(f"no answer in {allowed:.1f} s")
            readable, writable, _ = select.select([out_fd], [in_fd] if payload else [], [], left)
            if writable:
                try:
                    sent = os.write(in_fd, payload[:65536])
                except BrokenPipeError as exc:
                    raise ApertiumError("the pipeline closed its input") from exc
                payload = payload[sent:]
            if readable:
                chunk = os.read(out_fd, 65536)
                if not chunk:
                    raise ApertiumError("the pipeline exited")
                self._buf += chunk
                while b"\0" in self._buf and len(results) < len(lines):
                    item, self._buf = self._buf.split(b"\0", 1)
                    results.append(unescape(item.decode("utf-8", errors="replace")))
        return results


class ApertiumEngine:
    """Every installed pair, each started on first use and kept running; shared by all rooms."""

    name = "apertium"

    def __init__(self, config: ApertiumConfig | None = None) -> None:
        self.config = config or ApertiumConfig()
        if shutil.which("apertium-wblank-mode") is None:
            raise ApertiumError("Apertium is not installed (apt-get install apertium apertium-eng-spa)")
        self.pairs = available_pairs(self.config.modes_dir)
        if not self.pairs:
            raise ApertiumError(f"no Apertium language pairs in {self.config.modes_dir}")
        self.languages: frozenset[str] = frozenset(c for pair in self.pairs for c in pair)
        self._pipes: dict[tuple[str, str], _Pipe] = {}
        self._lock = threading.Lock()  # schedulers of several devices may share one engine
        self.restarts = 0

    def supports(self, source: str, target: str) -> bool:
        try:
            s, t = normalize(source), normalize(target)
        except UnknownLanguage:
            return False
        return s == t or (s, t) in self.pairs

    def targets(self, source: str) -> list[str]:
        s = normalize(source)
        return sorted(t for (a, t) in self.pairs if a == s)

    def _pipe(self, pair: tuple[str, str]) -> _Pipe:
        pipe = self._pipes.get(pair)
        if pipe is not None and not pipe.alive():
            log.warning("apertium %s-%s had exited; starting it again", *pair)
            pipe.kill()
            pipe = None
            self.restarts += 1
        if pipe is None:
            pipe = self._pipes[pair] = _Pipe(self.pairs[pair], self.config.mark_unknown)
        return pipe

    def run_batch(self, requests: Sequence[TranslateRequest]) -> list[Translation]:
        out: list[Translation | None] = [None] * len(requests)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(requests):
            s, t = normalize(r.source), normalize(r.target)
            if s == t or not r.text.strip():
                out[i] = Translation(r.text.strip(), r.source, r.target)
            elif (s, t) not in self.pairs:
                raise ValueError(f"Apertium has no {s}-{t} pair; installed: {sorted(self.pairs)}")
            else:
                groups.setdefault((s, t), []).append(i)
        with self._lock:
            for pair, idx in groups.items():
                pipe = self._pipe(pair)
                try:
                    texts = pipe.translate([requests[i].text for i in idx], self.config.timeout)
                except ApertiumError:
                    # A hung or dead pipeline is replaced; the scheduler retries these lines one by one.
                    pipe.kill()
                    self._pipes.pop(pair, None)
                    self.restarts += 1
                    raise
                for i, text in zip(idx, texts, strict=True):
                    out[i] = Translation(text, requests[i].source, requests[i].target)
        return [t for t in out if t is not None]

    def close(self) -> None:
        with self._lock:
            for pipe in self._pipes.values():
                pipe.kill()
            self._pipes.clear()
