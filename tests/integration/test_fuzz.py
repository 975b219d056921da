"""Property-based fuzzing of what parses untrusted input: the SDP offer check and the JSON
reader directly, then mutated offers and bodies against a real server. Bounded by example
counts (no wall-clock deadline: the machine is shared); a hang would trip the test timeout."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.edge.http import JsonError, parse_json
from server.inference import LoadedModels
from server.media.peers import OfferError, check_offer
from server.state import STATE
from tests.support.probes import open_fds, wait_until
from tests.support.redis_server import RedisServer
from tests.support.scaleout import worker_in_process

# What Python's own error texts look like; an answer to a client must never carry them.
PYTHON_WORDS = re.compile(
    r"NoneType|object has no attribute|Traceback|Expecting value|invalid literal|Error\b"
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FINGERPRINT = ":".join(
    "4B 7F 2C 0F 8C E4 3E 92 61 1A 6A B5 EE 04 63 69 05 65 3C F8 F2 EC 9D 8C 1E 93 8C 0A 61 C1 53 D3".split()
)
# A real aiortc publisher offer (audio and a data channel), as the mutations' starting point.
BASE_OFFER = f"""v=0
o=- 3960539836 3960539836 IN IP4 0.0.0.0
s=-
t=0 0
a=group:BUNDLE 0 1
a=msid-semantic:WMS *
m=audio 9 UDP/TLS/RTP/SAVPF 96 0 8
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=mid:0
a=msid:7c9d 1b2e
a=rtcp:9 IN IP4 0.0.0.0
a=rtcp-mux
a=ssrc:1690112939 cname:4d8a3f57
a=rtpmap:96 opus/48000/2
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=ice-ufrag:Dd1h
a=ice-pwd:zKBbrtSEmUbnRIfRxLCs6C
a=fingerprint:sha-256 {FINGERPRINT}
a=setup:actpass
m=application 9 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 0.0.0.0
a=mid:1
a=sctp-port:5000
a=max-message-size:65536
a=ice-ufrag:Dd1h
a=ice-pwd:zKBbrtSEmUbnRIfRxLCs6C
a=fingerprint:sha-256 {FINGERPRINT}
a=setup:actpass
""".splitlines()

# Lines a hostile or broken client might add: absurd numbers, empty values, odd sections.
ODD_LINES = [
    "m=audio 0 RTP/AVP 0",
    "m=audio 99999999999 UDP/TLS/RTP/SAVPF 96",
    "m=video 9 UDP/TLS/RTP/SAVPF 97",
    "m=application 9 UDP/DTLS/SCTP",
    "m=",
    "a=rtpmap:96 opus/0/0",
    "a=rtpmap:96 opus",
    "a=rtpmap:x opus/48000/2",
    "a=rtpmap:97 H264/90000",
    "a=fmtp:96 minptime=10;useinbandfec=1;x",
    "a=fmtp:96",
    "a=rtcp-fb:96 nack",
    "a=ssrc:abc cname:x",
    "a=ssrc-group:FID 1",
    "a=setup:",
    "a=setup:active",
    "a=fingerprint:sha-256 ZZ",
    "a=fingerprint:md5 00",
    "a=ice-ufrag:",
    "a=ice-options:trickle",
    "a=candidate:1 1 UDP 2130706431 127.0.0.1 9 typ host",
    "a=candidate:garbage",
    "a=end-of-candidates",
    "c=IN IP6 ::1",
    "c=IN IP4",
    "a=group:BUNDLE 7 8 9",
    "a=mid:",
    "a=sctp-port:abc",
    "a=sctpmap:5000 webrtc-datachannel 1024",
    "a=max-message-size:-1",
    "a=rtcp:abc",
    "a=extmap:999999 x",
    "a=extmap-allow-mixed",
    "a=recvonly",
    "a=inactive",
    "a=sendrecv",
    "b=AS:-1",
    "v=1",
    "t=x y",
    "o=- x x IN IP4",
    "\x00",
    "a=" + "x" * 2000,
]

mutation = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 200)),
    st.tuples(st.just("duplicate"), st.integers(0, 200)),
    st.tuples(st.just("insert"), st.integers(0, 200), st.sampled_from(ODD_LINES)),
    st.tuples(st.just("insert"), st.integers(0, 200), st.text(max_size=40)),
    st.tuples(st.just("cut"), st.integers(0, 200), st.integers(0, 80)),
    st.tuples(st.just("swap"), st.integers(0, 200), st.integers(0, 200)),
)


def mutate(lines: list[str], ops: list[tuple[Any, ...]]) -> str:
    lines = list(lines)
    for op in ops:
        if not lines:
            break
        i = op[1] % len(lines)
        if op[0] == "delete":
            del lines[i]
        elif op[0] == "duplicate":
            lines.insert(i, lines[i])
        elif op[0] == "insert":
            lines.insert(i, op[2])
        elif op[0] == "cut":
            lines[i] = lines[i][: op[2]]
        else:
            j = op[2] % len(lines)
            lines[i], lines[j] = lines[j], lines[i]
    return "\r\n".join(lines) + "\r\n"


sdp_offers = st.one_of(
    st.lists(mutation, min_size=1, max_size=8).map(lambda ops: mutate(BASE_OFFER, ops)),
    st.text(max_size=300),
    st.text(alphabet="v=0\r\nmacst:/ 0123456789", max_size=300),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
json_texts = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries({"sdp": json_values, "name": json_values}).map(json.dumps),
    st.integers(0, 3000).map(lambda n: '{"sdp": ' + "[" * n + "]" * n + "}"),
    st.text(alphabet='{}[]":,0123456789ntrufalse\\ ', max_size=200),
    st.text(max_size=200),
)


@FUZZ
@given(sdp=sdp_offers, want_audio=st.booleans())
def test_the_offer_check_refuses_or_accepts_but_never_breaks(sdp: str, want_audio: bool) -> None:
    try:
        parsed = check_offer(sdp, want_audio)
    except OfferError as exc:
        assert exc.code and exc.message
    else:
        assert parsed.media


@FUZZ
@given(text=json_texts)
def test_the_json_reader_parses_or_answers_400_never_anything_else(text: str) -> None:
    try:
        parse_json(text)
    except JsonError as exc:
        assert exc.status == 400 and exc.code in ("bad_json", "json_too_deep")


def collect(strategy: st.SearchStrategy[str], count: int) -> list[str]:
    """Draw ``count`` examples the way a property test would, to send them over HTTP."""
    drawn: list[str] = []

    @settings(max_examples=count, deadline=None, database=None, derandomize=True)
    @given(strategy)
    def draw(example: str) -> None:
        drawn.append(example)

    draw()
    return drawn


async def fuzz_server(
    base: str,
    state: Any,
    publish: dict[str, str] | None = None,
    view: dict[str, str] | None = None,
    count_fds: bool = True,
) -> dict[int, int]:
    """Mutated offers and bodies at one server's WHIP, viewer and room endpoints (``publish`` and
    ``view``: the room's tokens, where it has them); every answer under 500 and JSON when refused."""
    offers, bodies = collect(sdp_offers, 150), collect(json_texts, 150)
    fds_before = open_fds()
    timeout = aiohttp.ClientTimeout(total=30)  # far beyond a healthy answer: a hang fails here
    answered: dict[int, int] = {}
    async with aiohttp.ClientSession(base, timeout=timeout) as http:

        async def post(path: str, body: str, ctype: str, headers: dict[str, str] | None) -> None:
            sent = {"Content-Type": ctype, **(headers or {})}
            async with http.post(path, data=body.encode("utf-8", "surrogatepass"), headers=sent) as resp:
                answered[resp.status] = answered.get(resp.status, 0) + 1
                assert resp.status < 500, (path, body[:500], await resp.text())
                if resp.status >= 400:
                    refusal = await resp.json()
                    assert refusal["error"] and len(refusal["message"]) <= 400
                    assert not PYTHON_WORDS.search(refusal["message"]), refusal  # ours, not Python's

        whip = "/whip/fuzz" if publish else "/whip/open-fuzz"
        for sdp in offers:
            await post(whip, sdp, "application/sdp", publish)
            await post("/rooms/fuzz/viewers", json.dumps({"sdp": sdp}), "application/json", view)
        for body in bodies:
            await post("/rooms/fuzz/viewers", body, "application/json", view)
            await post("/rooms", body, "application/json", None)
        assert (await http.get("/health")).status == 200
    assert answered.get(400, 0) > 100, answered
    # Offers that were good enough to answer became ghosts; the deadline closes them all.
    await wait_until(lambda: len(state.peers) == 0, 60, "every fuzzed peer is closed")
    await wait_until(lambda: not state.publishers, 30, "every fuzzed publisher is forgotten")
    if count_fds:
        # Even peers whose close failed half-way in aiortc gave their sockets back. (Not with a
        # gateway: its Redis pools open connections under load and keep them.)
        await wait_until(lambda: open_fds() <= fds_before + 2, 10, "the fuzzed peers' descriptors are freed")
    return answered


@pytest.mark.timeout(280)
async def test_mutated_offers_and_bodies_never_get_a_500_or_hang(nova) -> None:
    server = await nova(connect_timeout=2.0, offers_per_minute=0, max_pending=0)
    async with aiohttp.ClientSession(str(server.make_url(""))) as http:
        await http.post("/rooms", json={"name": "fuzz"})
    await fuzz_server(str(server.make_url("")), server.app[STATE])


@pytest.mark.timeout(280)
async def test_mutated_offers_and_bodies_on_a_second_gateway_never_get_a_500_or_hang(
    nova, redis_server: RedisServer, inference: LoadedModels
) -> None:
    """The same fuzzing at gateway B, of a private room made on gateway A, with its tokens."""
    async with worker_in_process(redis_server.url, dict(inference.devices[0][1])):
        a = await nova(redis=redis_server.url)
        b = await nova(redis=redis_server.url, connect_timeout=2.0, offers_per_minute=0, max_pending=0)
        async with aiohttp.ClientSession(str(a.make_url(""))) as http:
            made = await (await http.post("/rooms", json={"name": "fuzz", "private": True})).json()
        publish = {"Authorization": f"Bearer {made['publish_token']}"}
        view = {"Authorization": f"Bearer {made['view_token']}"}
        answered = await fuzz_server(str(b.make_url("")), b.app[STATE], publish, view, count_fds=False)
    assert 401 not in answered and 403 not in answered  # the tokens made on A hold on B
