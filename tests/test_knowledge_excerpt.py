"""What of a passage the prompt quotes (runtime/knowledge/excerpt.py): the sentences that match
the question, each from the start of its line to the sentence after it, in reading order; the
whole passage when none matches."""

from __future__ import annotations

from runtime.knowledge.excerpt import SKIP, excerpt, question_terms, sentences

README = """HTTPX is a fully featured HTTP client library for Python 3. It has a command line.
Install with pip:
$ pip install httpx
Or, to include the optional HTTP/2 support, use:
$ pip install httpx[http2]
HTTPX requires Python 3.8+.

The HTTPX project relies on these excellent libraries:
httpcore - The underlying transport implementation for httpx.
h11 - HTTP/1.1 support.
certifi - SSL certificates."""

ZH = "\n".join([
    "SnowNLP是一个python写的类库，可以方便的处理中文文本内容。",
    "中文分词（Character-Based Generative Model）",
    "词性标注（TnT 3-gram 隐马）",
    "情感分析（现在训练数据主要是买卖东西时的评价，所以对其他的一些可能效果不是很好）",
    "文本分类（Naive Bayes）",
    "转换成拼音（Trie树实现的最大匹配）",
    "繁体转简体（Trie树实现的最大匹配）",
    "提取文本关键词（TextRank算法）",
    "文本相似（BM25）",
])


def test_sentences_are_lines_and_the_sentences_of_a_line():
    assert sentences("One. Two is 3.5 long!\n\n$ pip install x\n第一句。第二句？尾") == [
        "One.", "Two is 3.5 long!", "$ pip install x", "第一句。", "第二句？", "尾"]


def test_question_words_and_stop_words_do_not_match():
    assert question_terms("What Python version does HTTPX require?") == {
        "pytho", "versi", "httpx", "requi"}
    assert question_terms("SnowNLP 提取文本关键词用什么算法？") >= {"snown", "关键", "算法"}
    assert not question_terms("SnowNLP 提取文本关键词用什么算法？") & {"什么", "么算"}


def test_the_matching_sentence_comes_first_with_the_one_after_it_and_nothing_else():
    # a small model copies a passage from its first line: that line is the one that answers
    shown = excerpt(README, "How do I install HTTPX with the optional HTTP/2 support?")
    assert shown == "Or, to include the optional HTTP/2 support, use:\n$ pip install httpx[http2]"
    assert "httpcore" not in shown and len(shown) < len(README) / 3


def test_a_matching_sentence_keeps_the_start_of_its_line():
    text = ("The HTTPX project relies on these libraries:\n"
            "httpcore - The underlying transport.\n"
            "zstandard - Decoding for zstd compressed responses. (Optional, with httpx[zstd])\n"
            "certifi - SSL certificates.\n"
            "rich - Rich terminal support. (Optional, with httpx[cli])")
    assert excerpt(text, "Which package must HTTPX install for httpx[zstd]?") == (
        "zstandard - Decoding for zstd compressed responses. (Optional, with httpx[zstd])\n"
        "certifi - SSL certificates.")


def test_runs_far_apart_are_joined_with_a_skip_in_reading_order():
    shown = excerpt(README, "Which library gives HTTPX its HTTP/1.1 support, and which "
                            "Python version is required?")
    assert shown.index("Python 3.8+") < shown.index("h11 - HTTP/1.1 support.")
    assert SKIP in shown


def test_a_chinese_question_finds_its_line_by_bigrams():
    shown = excerpt(ZH, "SnowNLP 情感分析的训练数据主要是什么？")
    assert "买卖东西时的评价" in shown and "BM25" not in shown
    assert excerpt(ZH, "SnowNLP 提取文本关键词用什么算法？").splitlines() == [
        "提取文本关键词（TextRank算法）", "文本相似（BM25）"]


def test_a_passage_sharing_no_word_with_the_question_is_quoted_whole():
    # asked in the other language: the vectors found the passage, its words cannot place it
    assert excerpt(README, "HTTPX 用哪个库支持 HTTP/1.1？") != README.strip()  # names match
    assert excerpt(README, "用哪个库来处理证书？") == README.strip()
    assert excerpt("One short line.", "line") == "One short line."


STORES = "\n".join([
    "表1 各城市门店信息。所有门店周末照常营业。",
    "城市 | 门店地址 | 营业时间 | 电话",
    "北京 | 朝阳区建国路88号 | 9:00-21:00 | 010-65551234",
    "上海 | 浦东新区世纪大道100号 | 10:00-22:00 | 021-58884321",
    "广州 | 天河区体育西路12号 | 9:30-20:30 | 020-38886677",
    "成都 | 锦江区春熙路5号 | 10:00-21:30 | 028-86669900",
    "如需预约维修服务，请提前一天致电门店。"])


def test_a_tables_matching_row_is_quoted_under_its_header_without_the_next_row():
    """The header names the row's cells (which number is the phone's) and holds the question's
    column words: alone it outscored the row that answers, and the model copied the row after
    it (Beijing's number for Guangzhou's)."""
    assert excerpt(STORES, "广州门店的电话是多少？") == (
        "城市 | 门店地址 | 营业时间 | 电话\n广州 | 天河区体育西路12号 | 9:30-20:30 | 020-38886677")
    assert excerpt(STORES, "北京和成都门店的营业时间？") == (
        "城市 | 门店地址 | 营业时间 | 电话\n北京 | 朝阳区建国路88号 | 9:00-21:00 | 010-65551234\n"
        "成都 | 锦江区春熙路5号 | 10:00-21:30 | 028-86669900")


def test_table_headers_are_the_first_line_of_each_run_of_rows():
    from runtime.knowledge.rows import headers

    lines = ["Prose.", "a | b", "1 | 2", "3 | 4", "More prose.", "x | y", "cat f | grep x", "end"]
    assert headers(lines) == [None, None, 1, 1, None, None, 5, None]
    assert headers(["a lone | row", "prose"]) == [None, None]
