"""Bytes to text for .txt/.md/.html: UTF-8/16/32 (UTF-8 with a few bad bytes too), GB18030/GBK,
Big5, and what charset-normalizer recognises. Chinese files are often not UTF-8, and short ones
fool statistical detectors (two characters of GBK are also valid Big5), so Chinese encodings
are decided by which decoding gives common Chinese characters. Korean EUC-KR is valid GBK made
of common characters too: it is told apart by charset-normalizer's measure of how messy each
reading is. Latin-script code pages, which charset-normalizer scores alike, are decided by
whose accented letters are one language's (Windows-1252, what "Latin-1" files and unlabelled
Western pages are, first among equals, as in browsers)."""

from __future__ import annotations

import codecs
import logging
import unicodedata

import charset_normalizer
from charset_normalizer.md import mess_ratio

from runtime.errors import DocumentError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts with UTF-16 LE's
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CHINESE = ("gb18030", "big5")
# Below this share of plausible characters a Chinese decoding is taken for noise.
_PLAUSIBLE = 0.6
# UTF-8 with a few bad bytes (a stray byte, a file cut inside a character) is still UTF-8: at
# most one invalid sequence per _DAMAGED bytes (two in a short file), and at least
# _VALID_PER_BAD valid multi-byte characters per invalid one (a GBK or Latin-1 file decoded as
# UTF-8 has next to none).
_DAMAGED = 1000
_VALID_PER_BAD = 20
_LATIN = ("cp1252", "cp1250", "cp1254", "cp1257")  # Western, Central European, Turkish, Baltic
# The accented letters of the languages those code pages are for.
_ALPHABETS = tuple(set(letters) for letters in (
    "àâæçéèêëîïôœùûüÿ", "äöüß", "áéíóúñü", "ãõáâêôçéíóúà", "àèéìíîòóùú", "åæøäöéü", "ëïéèóáúíöü",
    "àèéíïòóúüç", "áčďéěíňóřšťúůýž", "áäčďéíĺľňóôŕšťúýž", "ąćęłńóśźż", "áéíóöőúüű", "ăâîșțşţ",
    "čćđšž", "çğıöşüâî", "ąčęėįšųūž", "āčēģīķļņšūž", "äöõüšž", "áðéíóúýþæö",
))

log = logging.getLogger(__name__)


def decode_text(data: bytes, name: str) -> str:
    """The text of a document file, or DocumentError naming why it cannot be decoded."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _strict(data, encoding, name)
    if 0 < data.count(0) <= max(1, len(data) // _DAMAGED):  # a stray NUL in text, not UTF-16
        data = data.replace(b"\x00", b"")
    text: str | None
    try:
        text = data.decode("utf-8")  # strict first: valid UTF-8 is almost never anything else
    except UnicodeDecodeError:
        text = _damaged_utf8(data, name)
    if text is not None and "\x00" not in text:  # NULs: UTF-16 without a BOM, or binary
        return text
    chinese = _guess_chinese(data)
    if chinese is not None:
        return _korean(data) or chinese
    best = charset_normalizer.from_bytes(data).best()
    if best is None or best.encoding is None or _looks_binary(str(best)):
        raise DocumentError(f"{name}: not text in any known encoding (binary file?)")
    text = str(best)
    return (_latin(data) or text) if _latin_script(text) else text


def _latin_script(text: str) -> bool:
    letters = [c for c in text if c.isalpha() and ord(c) > 0x7F]
    return sum(unicodedata.name(c, "").startswith("LATIN") for c in letters) > len(letters) / 2


def _latin(data: bytes) -> str | None:
    """Text in a Latin-script code page. charset-normalizer tells these apart poorly (a French
    "à" is cp1250's "ŕ", a Czech "ř" cp1252's "ø", at equal scores): the reading whose accented
    letters are one language's, then the least messy, Windows-1252 first among equals."""
    scored = []
    for rank, encoding in enumerate(_LATIN):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        scored.append((-_one_language(text), mess_ratio(text), rank, text))
    return min(scored)[-1] if scored else None


def _one_language(text: str) -> float:
    """Share of a text's accented letters (each counted once) that one language has."""
    letters = {c for c in text.lower() if c.isalpha() and ord(c) > 0x7F}
    if not letters:
        return 1.0
    return max(len(letters & alphabet) for alphabet in _ALPHABETS) / len(letters)


def _korean(data: bytes) -> str | None:
    """The EUC-KR (CP949) reading of bytes that also read as common Chinese characters, when it
    is mostly Hangul and less messy than the Chinese reading."""
    try:
        text = data.decode("cp949")
    except UnicodeDecodeError:
        return None
    wide = [c for c in text if ord(c) > 0x7F]
    if sum("\uac00" <= c <= "\ud7a3" for c in wide) < _PLAUSIBLE * len(wide):
        return None
    chinese = charset_normalizer.from_bytes(data, cp_isolation=list(_CHINESE)).best()
    if chinese is not None and mess_ratio(text) >= chinese.chaos:
        return None
    return text


def _damaged_utf8(data: bytes, name: str) -> str | None:
    """UTF-8 text with its few invalid bytes left out (logged), or None if it is not UTF-8."""
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    valid = sum(1 for c in text if ord(c) > 0x7F) - bad
    if bad > max(2, len(data) // _DAMAGED) or valid < _VALID_PER_BAD * bad:
        return None
    log.warning("%s: %d invalid UTF-8 byte sequence(s) left out", name, bad)
    return data.decode("utf-8", errors="ignore")


def _strict(data: bytes, encoding: str, name: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{name}: invalid {encoding} text at byte {exc.start}") from None


def _guess_chinese(data: bytes) -> str | None:
    """The best-scoring of the Chinese decodings, if one looks like real Chinese text."""
    scored: list[tuple[float, int, str]] = []
    for encoding in _CHINESE:  # the order breaks ties: GBK files are the more common
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        scored.append((_plausibility(text), -len(scored), text))
    if not scored:
        return None
    score, _, text = max(scored)
    return text if score >= _PLAUSIBLE and not _looks_binary(text) else None


def _plausibility(text: str) -> float:
    """Share of the non-ASCII characters that are common Chinese characters or CJK punctuation.
    A wrong decoding gives rare characters, bopomofo, small forms and private-use code points."""
    wide = [c for c in text if ord(c) > 0x7F]
    if not wide:
        return 0.0
    return sum(1 for c in wide if _common(c)) / len(wide)


def _common(char: str) -> bool:
    if "\u3000" <= char <= "\u303f" or "\uff01" <= char <= "\uff5e":
        return True  # CJK and full-width punctuation
    for encoding, low, high in (("gb2312", 0xB0A1, 0xD7FE), ("big5", 0xA440, 0xC67E)):
        # GB2312 level 1 and Big5's frequent characters: the ones real text is made of.
        try:
            code = char.encode(encoding)
        except UnicodeEncodeError:
            continue
        if len(code) == 2 and low <= (code[0] << 8 | code[1]) <= high:
            return True
    return False


def _looks_binary(text: str) -> bool:
    controls = sum(1 for c in text[:4096] if c < " " and c not in "\t\n\r\f")
    return "\x00" in text or controls > len(text[:4096]) // 100
