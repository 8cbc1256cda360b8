"""Full-text terms, shared by the build (indexing passages) and the runtime (queries).

Both sides must cut text the same way, so this is the one definition. Standard library only: it
runs inside the frozen runtime.

Chinese, Japanese and Korean are written without spaces, so a word tokenizer sees a whole clause
as one token and no query ever matches it. Like Lucene's CJKAnalyzer we index every overlapping
pair of characters in a CJK run instead: 如何安装软件 gives 如何 何安 安装 装软 软件, and a query
for 安装 matches without any dictionary (jieba is 42 MB and still misses when query and passage
segment differently).
"""

from __future__ import annotations

import re
import unicodedata

# Ideographs (with extensions and compatibility forms), kana and hangul: the scripts written
# without spaces between words.
_CJK = (
    "\u1100-\u11ff"  # hangul jamo
    "\u3040-\u30ff"  # hiragana, katakana (with the prolonged sound mark)
    "\u3130-\u318f"  # hangul compatibility jamo
    "\u31f0-\u31ff"  # katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0003134f"  # CJK extensions B to G
)
# A CJK run, or a run of other word characters (letters, digits, underscore in any script).
_TOKEN = re.compile(f"([{_CJK}]+)|([^\\W{_CJK}]+)")


def terms(text: str) -> list[str]:
    """The index terms of `text`, in order: case-folded words, and CJK character bigrams."""
    out: list[str] = []
    # NFKC first: full-width Latin and digits (Ｐｙｔｈｏｎ３) become plain ones, ligatures split.
    normal = unicodedata.normalize("NFKC", text).casefold()
    for match in _TOKEN.finditer(normal):
        cjk, word = match.groups()
        if word is not None:
            out.append(word)
        elif len(cjk) == 1:
            out.append(cjk)  # a lone character still has to be findable
        else:
            out.extend(cjk[i : i + 2] for i in range(len(cjk) - 1))
    return out


_CJK_PAIR = re.compile(f"[{_CJK}]{{2}}")


def is_cjk_pair(term: str) -> bool:
    """A CJK character bigram (as terms() makes of a CJK run)."""
    return _CJK_PAIR.fullmatch(term) is not None


STEM = 5  # Latin words match on this many first letters (a crude, explainable stemmer)


def stem(term: str) -> str:
    """A Latin word cut to its first STEM letters (months/month, requires/required); any
    other term as it is."""
    return term[:STEM] if term.isascii() and term.isalpha() else term


def stems(text: str) -> set[str]:
    """The distinct terms of `text`, Latin words stemmed: what matching a question's terms
    against a passage's or a sentence's compares."""
    return {stem(t) for t in terms(text)}


_CJK_CHAR = re.compile(f"[{_CJK}]")
_WORD = re.compile(f"[^\\W\\d_{_CJK}]+")  # a run of letters of other scripts


def script(text: str) -> str:
    """"cjk" when `text` reads as Chinese, Japanese or Korean to the embedder, else "other":
    when it holds at least as many CJK characters as other words. A character against a word,
    not letter against letter: "pypinyin 的 lazy_pinyin 函数有什么参数？" is a Chinese question
    (8 characters, 3 words), and a Chinese README's passage with a code sample in it is
    Chinese text, which counting letters (18 against 8) made "other"."""
    cjk = len(_CJK_CHAR.findall(text))
    words = len(_WORD.findall(text))
    return "cjk" if cjk and cjk >= words else "other"
