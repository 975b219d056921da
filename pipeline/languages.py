"""Language codes: the ISO codes Whisper speaks, the FLORES-200 codes NLLB reads, one validator.

Rooms, viewers and captions use Whisper's ISO 639-1 codes (``es``, ``zh``); NLLB wants its
FLORES-200 tokens (``spa_Latn``, ``zho_Hans``). Chinese is the one language whose script
matters to a reader, so ``zh-Hant`` (and its regional spellings) is a language of its own.
"""

from __future__ import annotations

# Whisper's languages that NLLB-200 also has. Whisper's Latin (la), Breton (br) and
# Hawaiian (haw) have no NLLB counterpart and are left out.
FLORES: dict[str, str] = {
    "af": "afr_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "as": "asm_Beng", "az": "azj_Latn",
    "ba": "bak_Cyrl", "be": "bel_Cyrl", "bg": "bul_Cyrl", "bn": "ben_Beng", "bo": "bod_Tibt",
    "bs": "bos_Latn", "ca": "cat_Latn", "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn",
    "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn", "eo": "epo_Latn", "es": "spa_Latn",
    "et": "est_Latn", "eu": "eus_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fo": "fao_Latn",
    "fr": "fra_Latn", "gl": "glg_Latn", "gu": "guj_Gujr", "ha": "hau_Latn", "he": "heb_Hebr",
    "hi": "hin_Deva", "hr": "hrv_Latn", "ht": "hat_Latn", "hu": "hun_Latn", "hy": "hye_Armn",
    "id": "ind_Latn", "is": "isl_Latn", "it": "ita_Latn", "ja": "jpn_Jpan", "jw": "jav_Latn",
    "ka": "kat_Geor", "kk": "kaz_Cyrl", "km": "khm_Khmr", "kn": "kan_Knda", "ko": "kor_Hang",
    "lb": "ltz_Latn", "ln": "lin_Latn", "lo": "lao_Laoo", "lt": "lit_Latn", "lv": "lvs_Latn",
    "mg": "plt_Latn", "mi": "mri_Latn", "mk": "mkd_Cyrl", "ml": "mal_Mlym", "mn": "khk_Cyrl",
    "mr": "mar_Deva", "ms": "zsm_Latn", "mt": "mlt_Latn", "my": "mya_Mymr", "ne": "npi_Deva",
    "nl": "nld_Latn", "nn": "nno_Latn", "no": "nob_Latn", "oc": "oci_Latn", "pa": "pan_Guru",
    "pl": "pol_Latn", "ps": "pbt_Arab", "pt": "por_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl",
    "sa": "san_Deva", "sd": "snd_Arab", "si": "sin_Sinh", "sk": "slk_Latn", "sl": "slv_Latn",
    "sn": "sna_Latn", "so": "som_Latn", "sq": "als_Latn", "sr": "srp_Cyrl", "su": "sun_Latn",
    "sv": "swe_Latn", "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "tg": "tgk_Cyrl",
    "th": "tha_Thai", "tk": "tuk_Latn", "tl": "tgl_Latn", "tr": "tur_Latn", "tt": "tat_Cyrl",
    "uk": "ukr_Cyrl", "ur": "urd_Arab", "uz": "uzn_Latn", "vi": "vie_Latn", "yi": "ydd_Hebr",
    "yo": "yor_Latn", "yue": "yue_Hant", "zh": "zho_Hans", "zh-Hant": "zho_Hant",
}  # fmt: skip

# Other spellings people (and browsers' navigator.language) use for the same languages.
ALIASES: dict[str, str] = {
    "zh-hans": "zh", "zh-cn": "zh", "zh-sg": "zh", "zh-my": "zh",
    "zh-hant": "zh-Hant", "zh-tw": "zh-Hant", "zh-hk": "zh-Hant", "zh-mo": "zh-Hant",
    "jv": "jw", "iw": "he", "nb": "no", "fil": "tl", "in": "id",
}  # fmt: skip

# ISO 639-3, as Apertium names its pairs (``eng-spa``).
ISO3: dict[str, str] = {
    "en": "eng", "es": "spa", "ca": "cat", "gl": "glg", "eu": "eus", "eo": "epo", "fr": "fra",
    "pt": "por", "it": "ita", "de": "deu", "oc": "oci", "ro": "ron", "nl": "nld", "is": "isl",
    "sv": "swe", "da": "dan", "no": "nob", "nn": "nno", "af": "afr", "cy": "cym",
}  # fmt: skip

KNOWN: frozenset[str] = frozenset(FLORES)


class UnknownLanguage(ValueError):
    """A code that is not one of ``choices``; the message lists them, for a clear 400."""

    def __init__(self, code: str, choices: list[str], what: str = "language") -> None:
        self.code = code
        self.choices = sorted(choices)
        # The code is echoed to clients: a long one is cut, never repeated whole.
        said = code if len(code) <= 32 else code[:31] + "…"
        super().__init__(f"unknown {what} {said!r}; use one of: {', '.join(self.choices)}")


def normalize(code: str) -> str:
    """The canonical code for ``code`` (``ES`` -> ``es``, ``zh-TW`` -> ``zh-Hant``), or UnknownLanguage."""
    raw = code.strip().replace("_", "-")
    low = raw.lower()
    if low in ALIASES:
        return ALIASES[low]
    if low == "zh-hant":
        return "zh-Hant"
    if low in KNOWN:
        return low
    # Region tags of other languages (es-MX, pt-BR, en-US) read as the language itself.
    base = low.split("-", 1)[0]
    if base != "zh" and base in KNOWN:
        return base
    raise UnknownLanguage(code, sorted(KNOWN))


def parse_list(raw: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"es, fr"`` or ``["es", "fr"]`` -> ``("es", "fr")``, normalised, deduplicated, in order."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise UnknownLanguage(repr(item), sorted(KNOWN))
        if not item.strip():
            continue
        code = normalize(item)
        if code not in out:
            out.append(code)
    return tuple(out)


def flores(code: str) -> str:
    """NLLB's token for an ISO code (``es`` -> ``spa_Latn``)."""
    return FLORES[normalize(code)]


def base(code: str) -> str:
    """The language without its script: ``zh-Hant`` -> ``zh`` (Whisper detects only ``zh``)."""
    return code.split("-", 1)[0]
