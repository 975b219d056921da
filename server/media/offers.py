"""What a publisher's offer gets in the answer, section by section, before aiortc sees it.

Only the first audio section is received. Every other media section (OBS sends H.264, AV1 or
HEVC video beside its audio) must cost nothing: aiortc decodes each received video frame
into a queue nobody reads, and an offer whose video has no codec aiortc knows fails whole,
audio included. So:

- video (or a further audio section) that aiortc can negotiate is answered ``inactive``:
  a compliant sender sends no packets, and aiortc never starts a receiver for it;
- a section aiortc cannot negotiate (AV1/HEVC-only video, unknown kinds) is set aside before
  aiortc parses the offer and answered as rejected (RFC 3264 section 6: port 0), and its mid
  leaves the BUNDLE group.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import MediaDescription, SessionDescription

from server.media.inline_audio import decode_inline


@dataclass(frozen=True)
class Rejected:
    """A section set aside, with what its rejected answer section must echo."""

    index: int
    kind: str
    proto: str
    fmt: str
    mid: str | None


def _split(sdp: str) -> tuple[list[str], list[list[str]]]:
    session: list[str] = []
    sections: list[list[str]] = []
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def _join(session: list[str], sections: list[list[str]]) -> str:
    return "\r\n".join(session + [line for s in sections for line in s]) + "\r\n"


def _codecs(kind: str) -> list[RTCRtpCodecParameters]:
    return [
        RTCRtpCodecParameters(
            mimeType=c.mimeType, clockRate=c.clockRate, channels=c.channels, parameters=c.parameters
        )
        for c in RTCRtpReceiver.getCapabilities(kind).codecs
    ]


def answerable(media: MediaDescription) -> bool:
    """Whether aiortc can negotiate this section at all (a common codec, a known kind)."""
    if media.kind == "application":
        return True
    if media.kind not in ("audio", "video"):
        return False
    return bool(find_common_codecs(_codecs(media.kind), media.rtp.codecs))


def set_aside(sdp: str, parsed: SessionDescription) -> tuple[str, list[Rejected]]:
    """The offer without the sections aiortc cannot answer, and those sections."""
    session, sections = _split(sdp)
    if len(sections) != len(parsed.media):
        return sdp, []  # a layout we do not understand: let aiortc judge it whole
    rejected: list[Rejected] = []
    kept: list[list[str]] = []
    for i, (lines, media) in enumerate(zip(sections, parsed.media, strict=True)):
        if answerable(media):
            kept.append(lines)
            continue
        _, _, proto_fmt = lines[0].partition(" ")  # "m=video 9 UDP/TLS/RTP/SAVPF 45 46"
        _port, _, rest = proto_fmt.partition(" ")
        proto, _, fmt = rest.partition(" ")
        rejected.append(Rejected(i, media.kind, proto, fmt or "0", media.rtp.muxId or None))
    if not rejected:
        return sdp, []
    gone = {r.mid for r in rejected if r.mid}
    session = [_without_mids(line, gone) for line in session]
    return _join(session, kept), rejected


def _without_mids(line: str, mids: set[str]) -> str:
    if not line.startswith("a=group:"):
        return line
    head, *items = line.split(" ")
    return " ".join([head, *(m for m in items if m not in mids)])


def restore(answer: str, rejected: list[Rejected]) -> str:
    """The answer with a rejected (port 0) section back in place for each section set aside."""
    if not rejected:
        return answer
    session, sections = _split(answer)
    for r in sorted(rejected, key=lambda r: r.index):
        lines = [f"m={r.kind} 0 {r.proto} {r.fmt}", "c=IN IP4 0.0.0.0"]
        if r.mid:
            lines.append(f"a=mid:{r.mid}")
        lines.append("a=inactive")
        sections.insert(min(r.index, len(sections)), lines)
    return _join(session, sections)


def receive_first_audio(pc: RTCPeerConnection, parsed: SessionDescription) -> None:
    """Transceivers for the answerable sections, in offer order, before setRemoteDescription.

    aiortc pairs each offered section with the first waiting transceiver of its kind: the
    first audio section gets a receiving Opus-only transceiver (the codec the decoder path is
    built and tested for); every other audio or video section an inactive one.
    """
    opus = [c for c in RTCRtpReceiver.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
    audio_seen = False
    for media in parsed.media:
        if media.kind not in ("audio", "video") or not answerable(media):
            continue
        if media.kind == "audio" and not audio_seen:
            audio_seen = True
            transceiver = pc.addTransceiver("audio", direction="recvonly")
            transceiver.setCodecPreferences(opus)
            decode_inline(transceiver.receiver)
        else:
            pc.addTransceiver(media.kind, direction="inactive")
