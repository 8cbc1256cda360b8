"""Chunking: whole sentences, Chinese never cut mid-word, one section or page per chunk."""

from __future__ import annotations

from bundler.knowledge.chunk import chunk_document, split_sentences
from bundler.knowledge.document import Block, Document


def test_sentences_end_at_chinese_terminators_with_closing_quotes_kept() -> None:
    text = "如何安装？先下载安装包。然后“双击运行！”最后重启……好的"
    assert split_sentences(text) == [
        "如何安装？", "先下载安装包。", "然后“双击运行！”", "最后重启……", "好的",
    ]


def test_sentences_are_not_cut_inside_numbers_or_after_abbreviations() -> None:
    text = "Use e.g. Linux or macOS. Pi is 3.14 exactly! Dr. Smith agreed; see example.com today."
    assert split_sentences(text) == [
        "Use e.g. Linux or macOS.", "Pi is 3.14 exactly!", "Dr. Smith agreed;",
        "see example.com today.",
    ]


def test_a_section_or_table_number_does_not_end_a_sentence() -> None:
    # A chunk ended "…1.14." and the next began "List of key bindings for bash".
    text = ("1.14. List of key bindings for bash\n"
            "See Table 12.5. Shell options. It shipped in 2024. Then")
    assert split_sentences(text) == [
        "1.14. List of key bindings for bash", "See Table 12.5. Shell options.",
        "It shipped in 2024.", "Then"]


def test_sentences_end_at_line_breaks_and_semicolons() -> None:
    assert split_sentences("Name | Value\na | 1；b | 2") == ["Name | Value", "a | 1；", "b | 2"]


def test_a_lower_case_word_after_a_period_continues_the_sentence() -> None:
    assert split_sentences('He said "stop." then left. It rained.') == [
        'He said "stop." then left.', "It rained.",
    ]


def _doc(*blocks: Block) -> Document:
    return Document("guide.md", "Guide", list(blocks))


def test_chunks_pack_whole_sentences_up_to_the_budget_with_one_sentence_overlap() -> None:
    doc = _doc(Block("Alpha beta. Gamma delta. Epsilon zeta. Eta theta.", ("Setup",)))
    chunks = chunk_document(doc, len, max_tokens=30, overlap=1)
    assert [c.text for c in chunks] == [
        "Alpha beta. Gamma delta.", "Gamma delta. Epsilon zeta.", "Epsilon zeta. Eta theta.",
    ]
    assert all(len(c.text) <= 30 for c in chunks)
    assert {(c.document, c.title, c.location, c.headings) for c in chunks} == {
        ("guide.md", "Guide", "Setup", ("Setup",))
    }


def test_without_overlap_no_sentence_repeats() -> None:
    doc = _doc(Block("Alpha beta. Gamma delta. Epsilon zeta. Eta theta."))
    texts = [c.text for c in chunk_document(doc, len, max_tokens=30, overlap=0)]
    assert texts == ["Alpha beta. Gamma delta.", "Epsilon zeta. Eta theta."]


def test_a_table_runs_on_into_the_next_chunk_under_its_header() -> None:
    """A chunk of rows without the header does not say what its cells are: "广州 | 020-…" is
    found by a question about the phone only with the header's "电话"."""
    rows = ["城市 | 电话", "北京 | 010-65551234", "上海 | 021-58884321", "广州 | 020-38886677",
            "成都 | 028-86669900"]
    doc = _doc(Block("下表列出各门店的电话。"), Block("\n".join(rows)))
    texts = [c.text for c in chunk_document(doc, len, max_tokens=50, overlap=1)]
    assert texts == ["下表列出各门店的电话。\n城市 | 电话\n北京 | 010-65551234",
                     "城市 | 电话\n北京 | 010-65551234\n上海 | 021-58884321",
                     "城市 | 电话\n上海 | 021-58884321\n广州 | 020-38886677",
                     "城市 | 电话\n广州 | 020-38886677\n成都 | 028-86669900"]
    texts = [c.text for c in chunk_document(doc, len, max_tokens=50, overlap=0)]
    assert texts == ["下表列出各门店的电话。\n城市 | 电话\n北京 | 010-65551234",
                     "城市 | 电话\n上海 | 021-58884321\n广州 | 020-38886677",
                     "城市 | 电话\n成都 | 028-86669900"]


def test_a_heading_change_starts_a_new_chunk_with_its_path_as_location() -> None:
    doc = _doc(
        Block("Download it.", ("Install",)),
        Block("Run apt.", ("Install", "Linux")),
        Block("Use brew.", ("Install", "macOS")),
    )
    chunks = chunk_document(doc, len, max_tokens=200)
    assert [(c.location, c.text) for c in chunks] == [
        ("Install", "Download it."), ("Install › Linux", "Run apt."),
        ("Install › macOS", "Use brew."),
    ]


def test_pdf_chunks_never_span_a_page_and_cite_it() -> None:
    blocks = [Block("One.", (), 1), Block("Two.", (), 1), Block("Three.", (), 2)]
    doc = Document("m.pdf", "M", blocks)
    chunks = chunk_document(doc, len, max_tokens=200)
    assert [(c.location, c.page, c.text) for c in chunks] == [
        ("p. 1", 1, "One.\nTwo."), ("p. 2", 2, "Three."),
    ]


def test_chinese_sentences_join_without_spaces_and_blocks_with_line_breaks() -> None:
    doc = _doc(Block("安装很简单。先下载，再运行。"), Block("最后重启。"))
    assert [c.text for c in chunk_document(doc, len, max_tokens=100)] == [
        "安装很简单。先下载，再运行。\n最后重启。"
    ]


def test_chinese_is_cut_at_sentence_ends_not_mid_word() -> None:
    text = "本手册介绍产品的安装。配置文件位于用户目录。如果遇到问题请联系技术支持。"
    chunks = chunk_document(_doc(Block(text)), len, max_tokens=24, overlap=0)
    assert [c.text for c in chunks] == [
        "本手册介绍产品的安装。配置文件位于用户目录。", "如果遇到问题请联系技术支持。",
    ]


def test_an_over_long_sentence_is_cut_at_clauses_then_sliced() -> None:
    text = "先打开设置页面，再选择网络选项，然后输入服务器地址：192.168.1.1，最后保存"
    chunks = chunk_document(_doc(Block(text)), len, max_tokens=16, overlap=0)
    assert [c.text for c in chunks] == [
        "先打开设置页面，再选择网络选项，", "然后输入服务器地址：", "192.168.1.1，最后保存",
    ]
    words = " ".join(["configuration"] * 6)  # no clause mark at all: sliced at spaces
    sliced = chunk_document(_doc(Block(words)), len, max_tokens=30, overlap=0)
    assert [c.text for c in sliced] == ["configuration configuration"] * 3


def test_chunks_are_sized_by_the_given_token_counter() -> None:
    words = lambda text: len(text.split())  # noqa: E731 - a stand-in for a tokenizer
    doc = _doc(Block("a b c. d e f. g h i. j k l."))
    texts = [c.text for c in chunk_document(doc, words, max_tokens=6, overlap=0)]
    assert texts == ["a b c. d e f.", "g h i. j k l."]


def test_a_document_without_headings_or_pages_has_an_empty_location() -> None:
    chunks = chunk_document(Document("n.txt", "n.txt", [Block("Just text.")]), len)
    assert [(c.location, c.headings, c.page) for c in chunks] == [("", (), None)]


def test_a_huge_line_without_a_full_stop_is_sliced_without_tokenizing_all_of_it_per_cut() -> None:
    # Each cut searched the whole rest of the line: a 1 MB line took 72 s of tokenizing, and
    # the build looked hung in chunking. Now each cut tokenizes a window around the chunk.
    text = " ".join(f"word{i}" for i in range(40_000))  # ~270,000 characters
    counted = []

    def count(piece: str) -> int:
        counted.append(len(piece))
        return len(piece.split())

    chunks = chunk_document(Document("long.txt", "Long", [Block(text, ())]), count, 64, 0)
    assert " ".join(c.text for c in chunks) == text
    assert all(count(c.text) <= 64 for c in chunks)
    assert sum(counted) < 20 * len(text)
