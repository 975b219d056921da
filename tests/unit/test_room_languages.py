"""A room's languages, its per-language backlog and transcripts, across a restart (real files)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.translation import Emit
from pipeline.types import Caption
from server.rooms.registry import RoomRegistry, RoomSpec
from server.rooms.transcripts import TranscriptStore, for_language, to_vtt


class Inbox:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    def send(self, message: str) -> None:
        self.messages.append(json.loads(message))


def test_languages_backlogs_and_transcripts_survive_a_restart(tmp_path: Path) -> None:
    store = TranscriptStore(tmp_path)
    rooms = RoomRegistry(tmp_path / "rooms.json", on_final=store.append, history=store.history)
    room, _ = rooms.create("talk", RoomSpec(languages=("es", "fr")))
    source, spanish = Inbox(), Inbox()
    room.listen("src", source)
    room.listen("es", spanish, "es")
    room.join_publisher("p")
    msg = room.caption("p", Caption(0, True, "Your country.", 0.5, 1.5, "en"))
    room.translated(Emit(msg.segment, "es", False, "Vuestro", "en", msg.start, msg.end, ""))
    room.translated(Emit(msg.segment, "es", True, "Vuestro país.", "en", msg.start, msg.end))
    assert [m["text"] for m in source.messages] == ["Your country."]  # no translation leaks
    assert [(m["text"], m["final"]) for m in spanish.messages] == [
        ("Vuestro", False),
        ("Vuestro país.", True),
    ]
    assert spanish.messages[-1]["seq"] > msg.seq and spanish.messages[-1]["source_lang"] == "en"
    # A viewer of Spanish who joins now is replayed the Spanish line, not the English one.
    assert [json.loads(m)["text"] for m in room.replay(lang="es")] == ["Vuestro país."]
    assert [json.loads(m)["text"] for m in room.replay()] == ["Your country."]

    again = RoomRegistry(tmp_path / "rooms.json", on_final=store.append, history=store.history)
    back = again.get("talk")
    assert back is not None and back.languages == ("es", "fr") and back.token_hash == room.token_hash
    assert [k.message.text for k in back.lang_backlog["es"]] == ["Vuestro país."]
    assert [k.message.text for k in back.backlog] == ["Your country."]
    assert back.seq == spanish.messages[-1]["seq"]
    items = store.finals("talk")
    store.close()
    assert "país" in to_vtt(for_language(items, "es")) and "país" not in to_vtt(for_language(items, None))
    assert for_language(items, "en") == for_language(items, None)  # the spoken language is the source


def test_rooms_saved_before_translation_still_load(tmp_path: Path) -> None:
    (tmp_path / "rooms.json").write_text(json.dumps({"old": "somehash"}))
    rooms = RoomRegistry(tmp_path / "rooms.json", default_languages=("es",))
    old = rooms.get("old")
    assert old is not None and old.token_hash == "somehash" and old.languages == ("es",)


async def test_private_rooms_kept_in_view_tokens_json_stay_private(tmp_path: Path) -> None:
    """Before issue 17 a private room's view hash lived in view_tokens.json beside rooms.json."""
    (tmp_path / "rooms.json").write_text(json.dumps({"board": {"token_hash": "p"}}))
    (tmp_path / "view_tokens.json").write_text(json.dumps({"board": "v"}))
    rooms = RoomRegistry(tmp_path / "rooms.json")
    record = await rooms.record("board")
    assert record.private and record.view_hash == "v" and record.publish_hash == "p"
    rooms.create("other")  # saving again keeps the view hash, now in rooms.json
    assert json.loads((tmp_path / "rooms.json").read_text())["board"]["view_hash"] == "v"
