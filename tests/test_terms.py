"""Full-text terms: what a query and a passage must share for full-text search to find it."""

from __future__ import annotations

import ast
from pathlib import Path

from runtime.knowledge.terms import terms


def test_chinese_query_word_matches_passage_written_without_spaces() -> None:
    passage = set(terms("如何安装软件：先下载安装包，然后双击运行。"))
    assert terms("安装") == ["安装"]
    assert "安装" in passage
    assert terms("如何安装软件") == ["如何", "何安", "安装", "装软", "软件"]


def test_query_of_several_chinese_words_shares_every_bigram_with_the_passage() -> None:
    passage = set(terms("本软件支持全文检索和向量检索，两者的结果会被融合。"))
    assert set(terms("向量检索")) <= passage
    assert set(terms("全文 检索")) <= passage
    assert not set(terms("图片识别")) & passage


def test_lone_cjk_character_is_kept_as_a_unigram() -> None:
    assert terms("字") == ["字"]
    assert terms("第3章") == ["第", "3", "章"]


def test_english_words_are_case_folded_and_split_on_punctuation() -> None:
    assert terms("Install llama.cpp on LINUX; don't panic!") == [
        "install", "llama", "cpp", "on", "linux", "don", "t", "panic",
    ]


def test_english_is_not_stemmed() -> None:
    assert terms("installing installs") == ["installing", "installs"]


def test_full_width_latin_and_digits_match_their_ascii_forms() -> None:
    assert terms("ＧＰＵ　３２ＧＢ") == terms("gpu 32gb") == ["gpu", "32gb"]


def test_mixed_chinese_and_english_text_keeps_both() -> None:
    assert terms("用pip安装llamabundle包") == ["用", "pip", "安装", "llamabundle", "包"]


def test_japanese_kana_and_korean_hangul_are_bigrammed() -> None:
    assert terms("テスト") == ["テス", "スト"]
    assert terms("설치 방법") == ["설치", "방법"]


def test_accented_latin_words_stay_whole() -> None:
    assert terms("Café Straße") == ["café", "strasse"]


def test_terms_module_uses_only_the_standard_library() -> None:
    source = Path(__file__).parent.parent / "runtime" / "knowledge" / "terms.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported <= {"__future__", "re", "unicodedata"}
