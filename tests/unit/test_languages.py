"""Language codes: Whisper ISO codes to FLORES, aliases, and errors that list the choices."""

from __future__ import annotations

import pytest

from pipeline.languages import FLORES, UnknownLanguage, flores, normalize, parse_list


def test_iso_codes_map_to_flores() -> None:
    assert flores("es") == "spa_Latn"
    assert flores("en") == "eng_Latn"
    assert flores("zh") == "zho_Hans"
    assert flores("yue") == "yue_Hant"


@pytest.mark.parametrize(
    ("raw", "code"),
    [("ES", "es"), ("es-MX", "es"), ("pt_BR", "pt"), ("zh-CN", "zh"), ("zh-Hans", "zh"), ("zh-TW", "zh-Hant"),
     ("zh-hk", "zh-Hant"), ("zh-Hant", "zh-Hant"), ("jv", "jw"), ("nb", "no"), (" fr ", "fr")],
)  # fmt: skip
def test_spellings_normalise(raw: str, code: str) -> None:
    assert normalize(raw) == code
    assert code in FLORES


def test_an_unknown_code_lists_the_choices() -> None:
    with pytest.raises(UnknownLanguage) as info:
        normalize("xx")
    message = str(info.value)
    assert "'xx'" in message and "es" in info.value.choices and "zh-Hant" in message


def test_lists_are_normalised_deduplicated_and_ordered() -> None:
    assert parse_list("es, fr,ES,,zh-TW") == ("es", "fr", "zh-Hant")
    assert parse_list(["de", "de-AT"]) == ("de",)
    with pytest.raises(UnknownLanguage):
        parse_list(["es", "klingon"])
