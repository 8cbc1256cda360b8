"""Finding and reading knowledge documents: every format, encoding and bad file a builder has."""

from __future__ import annotations

import os
from pathlib import Path

import docx
import pytest
from PIL import Image
from reportlab.lib import colors
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table

from bundler.knowledge import Block, Source, find_documents, read_document
from runtime.errors import DocumentError

ZH_HANS = (
    "本手册介绍路由器的安装、配置和日常维护。请在开始之前阅读安全须知。\n"
    "如何安装软件：先下载安装包，然后双击运行。安装完成后，请重新启动设备。\n"
    "如果遇到问题，请联系技术支持，或者访问我们的网站查看常见问题。\n"
)
ZH_HANT = (
    "本手冊介紹路由器的安裝、設定和日常維護。請在開始之前閱讀安全須知。\n"
    "如何安裝軟體：先下載安裝包，然後按兩下執行。安裝完成後，請重新啟動裝置。\n"
    "如果遇到問題，請聯絡技術支援，或者造訪我們的網站查看常見問題。\n"
)
EN = (
    "The router needs a stable power supply.\n"
    "Connect the WAN port to your modem before you switch it on.\n"
)
# EUC-KR Korean is valid GBK made of common Chinese characters; Latin-1 French, cp1250 Czech
# and cp1254 Turkish each read as another code page at charset-normalizer's best score.
KO = "이 제품의 보증 기간은 2년입니다.\n배터리는 6개월 동안 보증됩니다.\n"
FR = "Le café est fermé le dimanche.\nRéservez à l'avance, s'il vous plaît.\n"
CS = "Změnit velikost okna.\nUmístění souboru není známé, zkuste to později.\n"
TR = "Anahtar için kullanıcı kimliği bulunamadı.\nLütfen şifrenizi değiştirin.\n"


def _read(path: Path) -> list[str]:
    return [block.text for block in read_document(Source(path, path.name)).blocks]


def _paragraphs(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("utf-8", EN + ZH_HANS),
        ("utf-8-sig", ZH_HANS),
        ("utf-16", EN + ZH_HANT),  # Python writes it with a BOM
        ("gb18030", ZH_HANS),
        ("gbk", ZH_HANT),  # traditional characters in a GBK file are still GBK
        ("big5", ZH_HANT),
        ("euc-kr", KO),
        ("latin-1", FR),
        ("cp1250", CS),
        ("cp1254", TR),
    ],
)
def test_text_files_are_decoded_in_their_encoding(
    tmp_path: Path, encoding: str, text: str
) -> None:
    path = tmp_path / "manual.txt"
    path.write_bytes("\n".join(_paragraphs(text)).replace("\n", "\n\n").encode(encoding))
    assert _read(path) == _paragraphs(text)


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("gbk", "你好"), ("big5", "你好"), ("gbk", "資料"), ("big5", "資料"),
        ("gbk", "配置文件位于用户目录。"), ("big5", "設定檔案位於使用者目錄。"),
    ],
)
def test_very_short_chinese_files_are_told_apart_between_gbk_and_big5(
    tmp_path: Path, encoding: str, text: str
) -> None:
    path = tmp_path / "short.txt"
    path.write_bytes(text.encode(encoding))
    assert _read(path) == [text]


def test_utf8_with_a_stray_byte_or_cut_inside_a_character_is_read_less_those_bytes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # One bad byte used to drop the whole file as "not text in any known encoding".
    paragraphs = _paragraphs(ZH_HANS)
    data = "\n\n".join(paragraphs).encode()
    middle = data.index(b"\n\n")
    path = tmp_path / "damaged.md"
    path.write_bytes(data[:middle] + b"\xff" + data[middle:] + "再见".encode()[:-1])
    assert _read(path) == [*paragraphs[:-1], paragraphs[-1] + "再"]
    assert "damaged.md: 2 invalid UTF-8 byte sequence(s) left out" in caplog.text
    # A GBK file is not damaged UTF-8: it is still read as GBK.
    path.write_bytes("\n\n".join(paragraphs).encode("gbk"))
    assert _read(path) == paragraphs


def test_text_as_editors_and_docs_sites_write_it_is_read_whole(tmp_path: Path) -> None:
    cases = {
        # old Mac line endings: one "line", read as one heading, was no text at all
        "mac.md": (b"# Backup\r\rThe backup runs at 02:00.\r\r## Restore\r\rRun restore.sh.\r",
                   ["The backup runs at 02:00.", "Run restore.sh."]),
        # a stray NUL and zero-width spaces inside words
        "nul.txt": ("The li\u200bcense key is ABC.\x00\n\nReturns within 30 days.".encode(),
                    ["The license key is ABC.", "Returns within 30 days."]),
        # footnotes and a definition whose target is not a link are text; an indented
        # directive option is not, a sentence opening with a role is
        "notes.md": (("本产品保修两年[^1]。\n\n[^1]: 保修期自购买之日起计算。\n\n"
                      "[1]: 先在测试环境验证。\n\n:class:`Session` objects persist cookies.\n\n"
                      ".. image:: logo.png\n   :alt: logo\n\n[site]: https://example.org\n"
                      ).encode(),
                     ["本产品保修两年[^1]。", "[^1]: 保修期自购买之日起计算。",
                      "[1]: 先在测试环境验证。", ":class:Session objects persist cookies."]),
        # HTML in a fenced code sample is the sample
        "embed.md": (b"Paste this:\n\n```html\n<div id=\"chat\"></div>\n<script src=\"w.js\">"
                     b"</script>\n<!-- end -->\n```\n\nDone.\n",
                     ["Paste this:", '<div id="chat"></div>\n<script src="w.js"></script>\n'
                      "<!-- end -->", "Done."]),
        # a <section>'s own header holds its heading and text
        "plans.html": (b"<header>Site</header><section><header><h2>Pricing</h2><p>Pro costs 12 "
                       b"dollars.</p></header><p>Annual billing saves two months.</p></section>",
                       ["Pro costs 12 dollars.", "Annual billing saves two months."]),
    }
    for name, (data, texts) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert _read(tmp_path / name) == texts, name


def test_plain_text_wraps_are_undone_without_spaces_between_chinese_characters(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wrapped.txt"
    path.write_text("Hard wrapped\nEnglish line.\n\n硬换行的\n中文段落。\n- item one\n- item two\n")
    assert _read(path) == [
        "Hard wrapped English line.", "硬换行的中文段落。", "- item one", "- item two",
    ]


def test_markdown_blocks_carry_their_heading_path_and_the_first_heading_is_the_title(
    tmp_path: Path,
) -> None:
    path = tmp_path / "guide.md"
    path.write_text(
        "---\nlayout: x\n---\n# Router guide\n\nRead **this** [first](http://x).\n\n"
        "## Install\n\n### Linux\n\n- Run the\n  installer.\n- Reboot.\n\n"
        "## 配置\n\n| Name | Value |\n|---|---|\n| port | 80 |\n\n"
        "```\n# not a heading\n```\n"
    )
    doc = read_document(Source(path, "docs/guide.md"))
    assert doc.title == "Router guide" and doc.relpath == "docs/guide.md"
    assert doc.blocks == [
        Block("Read this first.", ("Router guide",)),
        Block("Run the installer.", ("Router guide", "Install", "Linux")),
        Block("Reboot.", ("Router guide", "Install", "Linux")),
        Block("Name | Value\nport | 80", ("Router guide", "配置")),
        Block("# not a heading", ("Router guide", "配置")),
    ]


def test_html_keeps_headings_lists_and_table_rows_and_drops_page_chrome(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Help centre</title><style>p {color: red}</style>"
        "<script>document.write('<p>tracking</p>')</script></head><body>"
        "<header>Site name</header><nav><ul><li>Home</li><li>Login</li></ul></nav>"
        "<h1>安装指南</h1><p>First   download\nthe <b>package</b> &amp; run it.</p>"
        "<ul><li>Step one</li><li>Step two</li></ul><h2>Ports</h2>"
        "<table><tr><th>Port</th><th>Use</th></tr><tr><td>80</td><td>web</td></tr></table>"
        "<aside>Related links</aside><noscript>Enable JS</noscript>"
        "<footer>© 2024 ACME</footer></body></html>",
        encoding="utf-8",
    )
    doc = read_document(Source(path, "page.html"))
    assert doc.title == "安装指南"
    assert doc.blocks == [
        Block("First download the package & run it.", ("安装指南",)),
        Block("Step one", ("安装指南",)),
        Block("Step two", ("安装指南",)),
        Block("Port | Use\n80 | web", ("安装指南", "Ports")),
    ]


def test_html_cells_and_rows_end_without_their_end_tags_and_nothing_after_is_lost(
        tmp_path: Path) -> None:
    # Valid HTML leaves </td> and </tr> out; a nested table reads as its outer cell's text.
    path = tmp_path / "rates.html"
    path.write_text(
        "<h1>Shipping</h1><table><tr><th>Zone<th>Price<tr><td>Canada<td>$14.50"
        "<tr><td>Help<td><p>Call</p><table><tr><td>phone<td>555 0100</table></table>"
        "<p>Returns are accepted within 30 days.</p><table><tr><td>Unclosed<td>at the end")
    doc = read_document(Source(path, "rates.html"))
    assert doc.blocks == [
        Block("Zone | Price\nCanada | $14.50\nHelp | Call phone | 555 0100", ("Shipping",)),
        Block("Returns are accepted within 30 days.", ("Shipping",)),
        Block("Unclosed | at the end", ("Shipping",)),
    ]


def test_html_drops_chrome_marked_by_role_or_class_and_keeps_an_articles_own_header(
        tmp_path: Path) -> None:
    path = tmp_path / "article.html"
    path.write_text(
        "<title>Site | 新规</title><header>Site name</header>"
        "<div id='cookie-consent'><div>We use cookies.</div><p>Accept</p></div>"
        "<div role='navigation'><p>Home › News</p></div>"
        "<article><header><h1>电动自行车新规</h1><p class='meta'>2024-03-15</p></header>"
        "<p>未登记的车辆不得上路。</p>"
        "<pre><code>x = 1 <span class='token comment'># kept: a code comment</span></code></pre>"
        "<div class='share'>Share on Weibo</div>"
        "<div class='sphinxsidebar'><h3>Related Topics</h3><div><p>Previous</p></div>"
        "<p>Quick search</p></div><h2>Install<a class='headerlink' href='#i'>¶</a></h2>"
        "<p>pip install it</p></article><div class='footer'>© 2024</div>")
    doc = read_document(Source(path, "article.html"))
    assert doc.title == "电动自行车新规"
    assert doc.blocks == [
        Block("2024-03-15", ("电动自行车新规",)),
        Block("未登记的车辆不得上路。", ("电动自行车新规",)),
        Block("x = 1 # kept: a code comment", ("电动自行车新规",)),
        Block("pip install it", ("电动自行车新规", "Install")),
    ]


def test_html_chrome_named_inside_class_names_and_buttons_is_dropped_but_sections_are_kept(
        tmp_path: Path) -> None:
    # A Docusaurus page: its "On this page" contents, a copy button and the skip link went in
    # as passages; a Sphinx section whose id is its heading's ("cookies") was dropped whole.
    path = tmp_path / "install.html"
    path.write_text(
        "<a class='skipToContent_fXgn' href='#main'>Skip to main content</a>"
        "<div class='tocCollapsible_ETCw theme-doc-toc-mobile'>On this page</div>"
        "<h1>Install</h1><p>It needs Node.js 18.</p>"
        "<pre><code>npm install -g mytool</code></pre><button>Copy</button>"
        "<section id='cookies'><h2>Cookies</h2><p>Pass cookies with cookies=.</p></section>"
        "<div class='section' id='comments'><h2>Comments</h2><p>Start them with #.</p></div>"
        "<div class='tableOfContents_bqdL'><ul><li>Cookies</li><li>Comments</li></ul></div>"
        "<div class='csdn-toolbar'>首页 博客 下载</div><div class='recommend-box'>猜你喜欢</div>")
    assert _read(path) == [
        "It needs Node.js 18.", "npm install -g mytool", "Pass cookies with cookies=.",
        "Start them with #."]


def test_a_docbook_manuals_tip_boxes_are_kept_and_its_navigation_and_byline_left_out(
        tmp_path: Path) -> None:
    # The Debian Administrator's Handbook puts its TIP boxes in <div class="sidebar">: 26 % of
    # its text was dropped as a blog's sidebar; its Prev/Next bars, the Debian Reference's
    # navfooter and "List of Tables" became passages; its author byline every location.
    path = tmp_path / "apt.html"
    path.write_text(
        "<div id='banner'><a href='/get'>Download the ebook</a></div>"
        "<ul class='docnav'><li><a href='a.html'>Prev</a></li><li><a>Next</a></li></ul>"
        "<div class='navheader'><table><tr><td><a>Prev</a></td><td>6.2. APT</td></tr></table></div>"
        "<h1>APT</h1><h3 class='author'>Osamu Aoki</h3>"
        "<div class='list-of-tables'><p>Table 1.1. List of shells</p></div>"
        "<p>APT downloads the package lists.</p>"
        "<div class='sidebar'><p class='title'><strong>TIP</strong> Incremental updates</p>"
        "<p>Set <a href='#x'>Acquire::PDiffs</a> to false to fetch whole files.</p></div>"
        "<div class='note'><table><tr><td rowspan='2'><img alt='[Note]'></td><th>提示</th></tr>"
        "<tr><td><p>PAM 模块使用后缀 .so。</p></td></tr></table></div>"
        "<div class='sidebar widget-area'><ul><li><a href='/a'>Archives</a></li>"
        "<li><a href='/b'>Recent posts</a></li></ul></div>"
        "<div class='navfooter'><a>Chapter 4</a> | <a>Chapter 6</a></div>")
    doc = read_document(Source(path, "apt.html"))
    assert (doc.title, [(b.headings, b.text) for b in doc.blocks]) == ("APT", [
        (("APT",), "Osamu Aoki"),
        (("APT",), "APT downloads the package lists."),
        (("APT",), "TIP Incremental updates"),
        (("APT",), "Set Acquire::PDiffs to false to fetch whole files."),
        (("APT",), "提示\nPAM 模块使用后缀 .so。"),
    ])


def test_a_page_that_marks_its_main_content_is_read_from_it_alone(tmp_path: Path) -> None:
    # A help page's top bar and "Was this helpful?" box carry no chrome names: the page's
    # <main> says where its content is, as a browser's reader view takes it.
    page = ("<div id='top-bar'>Example Help Center Sign in</div>"
            "<div role='main'><h1>Reset</h1><p>Hold the reset button for 12 seconds.</p>"
            "<p>The default password is on the label under the router.</p></div>"
            "<div class='feedback'>Was this article helpful? Yes No</div>")
    path = tmp_path / "reset.html"
    path.write_text(page)
    assert _read(path) == ["Hold the reset button for 12 seconds.",
                           "The default password is on the label under the router."]
    # An <article> that is a small card beside the page's text is not the page.
    path.write_text("<h1>Reset</h1>" + "<p>Hold the reset button for 12 seconds.</p>" * 4
                    + "<article><p>Teaser: new routers</p></article>")
    assert len(_read(path)) == 5


def test_an_html_manuals_title_is_its_first_heading_even_with_nothing_under_it(
        tmp_path: Path) -> None:
    path = tmp_path / "manual.html"
    path.write_text("<title>manual.html</title><h1>The Manual</h1><div class='toc'>"
                    "<p>1. Setup</p></div><h1>1. Setup</h1><p>Plug it in.</p>")
    doc = read_document(Source(path, "manual.html"))
    assert doc.title == "The Manual" and doc.blocks == [Block("Plug it in.", ("1. Setup",))]


def test_html_without_headings_takes_its_title_element(tmp_path: Path) -> None:
    path = tmp_path / "faq.htm"
    path.write_text("<title>FAQ</title><p>Answer.</p>")
    assert read_document(Source(path, "faq.htm")).title == "FAQ"


def test_docx_keeps_body_order_heading_styles_and_tables(tmp_path: Path) -> None:
    document = docx.Document()
    document.core_properties.title = "Metadata title"
    document.add_paragraph("Before any heading.")
    document.add_heading("Installation", level=1)
    document.add_paragraph("Download the installer.")
    document.add_heading("Linux", level=2)
    table = document.add_table(rows=2, cols=2)
    rows = [("Distro", "Command"), ("Debian", "apt install")]
    for row, cells in zip(table.rows, rows, strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.add_heading("常见问题", level=1)
    document.add_paragraph("请联系技术支持。")
    path = tmp_path / "manual.docx"
    document.save(str(path))
    doc = read_document(Source(path, "manual.docx"))
    assert doc.title == "Installation"
    assert doc.blocks == [
        Block("Before any heading.", ()),
        Block("Download the installer.", ("Installation",)),
        Block("Distro | Command\nDebian | apt install", ("Installation", "Linux")),
        Block("请联系技术支持。", ("常见问题",)),
    ]


def test_docx_title_paragraph_names_it_and_nested_table_rows_are_kept(tmp_path: Path) -> None:
    document = docx.Document()
    document.core_properties.title = "PowerPoint 演示文稿"  # what metadata titles often are
    document.add_paragraph("员工手册", style="Title")
    document.add_heading("第一章 假期", level=1)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "假期"
    inner = table.rows[0].cells[1].add_table(rows=2, cols=2)
    for row, cells in zip(inner.rows, [("年假", "五天"), ("产假", "一百五十八天")], strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    path = tmp_path / "handbook.docx"
    document.save(str(path))
    doc = read_document(Source(path, "handbook.docx"))
    assert doc.title == "员工手册"
    assert doc.blocks == [
        Block("假期 | 年假 | 五天; 产假 | 一百五十八天", ("员工手册", "第一章 假期"))]


def test_docx_without_headings_takes_its_metadata_title(tmp_path: Path) -> None:
    document = docx.Document()
    document.core_properties.title = "Quarterly notes"
    document.add_paragraph("Plain paragraph.")
    path = tmp_path / "notes.docx"
    document.save(str(path))
    assert read_document(Source(path, "notes.docx")).title == "Quarterly notes"


def _pdf(path: Path, pages: list[list[str]], *, title: str = "", encrypt: str | None = None,
         header: str | None = None) -> Path:
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))  # Adobe's CJK font: no file needed
    pdf = canvas.Canvas(str(path), pagesize=(595, 842), encrypt=encrypt, invariant=True)
    if title:
        pdf.setTitle(title)
    for number, lines in enumerate(pages, start=1):
        if header:
            pdf.setFont("Helvetica", 9)
            pdf.drawString(72, 805, header)
            pdf.drawString(280, 30, f"Page {number} of {len(pages)}")
        y = 740.0
        for line in lines:
            if not line:
                y -= 30  # a gap: a new paragraph
                continue
            cjk = any(ord(char) > 0x2E80 for char in line)
            pdf.setFont("STSong-Light" if cjk else "Helvetica", 11)
            pdf.drawString(72, y, line)
            y -= 14
        pdf.showPage()
    pdf.save()
    return path


def test_pdf_text_keeps_pages_and_drops_running_headers_footers_and_hyphenation(
    tmp_path: Path,
) -> None:
    path = _pdf(
        tmp_path / "router.pdf",
        [
            [
                "The router needs a stable power supply and a",
                "wired connection for the first config-",
                "uration step.", "", "如何安装软件：先下载安装", "包，然后双击运行。",
            ],
            ["Reset the device by holding the button", "for ten seconds."],
        ],
        title="ACME Router",
        header="ACME Router Manual, version 2",
    )
    doc = read_document(Source(path, "router.pdf"))
    assert doc.title == "ACME Router"
    assert doc.blocks == [
        Block("The router needs a stable power supply and a wired connection for the first "
              "configuration step.", (), 1),
        Block("如何安装软件：先下载安装包，然后双击运行。", (), 1),
        Block("Reset the device by holding the button for ten seconds.", (), 2),
    ]


def test_pdf_ligatures_and_soft_hyphens_become_plain_text() -> None:
    from bundler.knowledge.document import join_lines
    from bundler.knowledge.pdffile import _clean

    assert _clean("\uf001rst \ufb02ow \uf002ag \ufb00") == "first flow flag ff"
    joined = join_lines(["a docu\u00ad", "ment with soft\u00adhyphens"])
    assert joined == "a document with softhyphens"


def test_a_pdfs_table_of_contents_pages_are_left_out_and_its_chapters_kept(
        tmp_path: Path) -> None:
    # The prose above a contents page's entries is kept (a FAQ says how many questions it has).
    contents = ["本文的大部分内容都来自于论坛上的讨论。版本号为 0.4，一共收录有 89 个问题。", "",
                "Contents", "", *[f"{n}.{m} 升级工作站 . . . . . . . . . . . . {n * 10 + m}"
                                  for n in (1, 2) for m in (1, 2, 3)], "", "Appendix....... iv"]
    chapter = ["12.2 升级工作站", "", "Run the upgrade on the main server first. . . then reboot."]
    path = _pdf(tmp_path / "manual.pdf", [contents, chapter])
    assert [(b.page, b.text) for b in read_document(Source(path, "manual.pdf")).blocks] == [
        (1, "本文的大部分内容都来自于论坛上的讨论。版本号为 0.4，一共收录有 89 个问题。"),
        (2, "12.2 升级工作站"), (2, "Run the upgrade on the main server first. . . then reboot.")]


def test_pdf_stretched_chinese_is_read_without_spaces_and_real_spaces_kept(
        tmp_path: Path) -> None:
    """Justified Chinese sets its characters a little apart: pdfminer wrote a space between
    each two ("对 应 宏 定 义", a TeX book's every line), which no CJK bigram matches."""
    path = tmp_path / "book.pdf"
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    pdf = canvas.Canvas(str(path), pagesize=(595, 842), invariant=True)
    for y, text, spacing in [(740, "传递给宏的每个参量都对应宏定义中的一个参数。", 2.0),
                             (700, "第 1 节 介绍", 0.0), (660, "目录", 4.0),
                             (620, ". . . . . . . . . .", 0.0)]:
        line = pdf.beginText(72, y)
        line.setFont("STSong-Light", 11)
        line.setCharSpace(spacing)
        line.textLine(text)
        pdf.drawText(line)
    pdf.showPage()
    pdf.save()
    assert [b.text for b in read_document(Source(path, "book.pdf")).blocks] == [
        "传递给宏的每个参量都对应宏定义中的一个参数。", "第 1 节 介绍", "目录"]


def test_pdf_paragraphs_set_with_wide_leading_are_read_whole(tmp_path: Path) -> None:
    """Chinese is set with more leading than pdfminer groups into one box: every line was a
    block of its own, cut inside words ("再用 \\input 命令插入。复" | "杂的图、表…")."""
    path = tmp_path / "guide.pdf"
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    pdf = canvas.Canvas(str(path), pagesize=(595, 842), invariant=True)
    lines = [(72, 14, "第二章 安装"),  # a heading: larger type
             (94, 11, "当导言区内容较多时，常常将其单独放置在一个文件中，再用命令插入。复"),
             (72, 11, "杂的图、表、代码等也会用类似的手段处理。这一段到这里为止，后面另起一"),
             (72, 11, "段。"),
             (94, 11, "新的一段从这里开始，它的第一行缩进两个字，并且一直写到这一行的最右"),
             (72, 11, "1. 列表的第一项"),
             (72, 11, "2. 列表的第二项写得很长很长，一直写到这一行的最右边，然后接着写到下一"),
             (88, 11, "行，与列表项的文字对齐。")]
    y = 740.0
    for x, size, text in lines:
        pdf.setFont("STSong-Light", size)
        pdf.drawString(x, y, text)
        y -= 2 * size  # double spacing: each line a box of its own for pdfminer
    pdf.showPage()
    pdf.save()
    assert [b.text for b in read_document(Source(path, "guide.pdf")).blocks] == [
        "第二章 安装",
        "当导言区内容较多时，常常将其单独放置在一个文件中，再用命令插入。复杂的图、表、代码等也"
        "会用类似的手段处理。这一段到这里为止，后面另起一段。",
        "新的一段从这里开始，它的第一行缩进两个字，并且一直写到这一行的最右",
        "1. 列表的第一项",
        "2. 列表的第二项写得很长很长，一直写到这一行的最右边，然后接着写到下一行，"
        "与列表项的文字对齐。"]


def _plans_pdf(path: Path, table_style: list[tuple[object, ...]]) -> Path:
    """A page with an English and a Chinese table of plans between paragraphs."""
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    normal = getSampleStyleSheet()["Normal"]
    chinese = normal.clone("chinese", fontName="STSong-Light")
    english = [["Plan", "Price per month", "Storage", "Support"],
               ["Basic", "$5", "10 GB", "Email only"],
               ["Standard", "$12", "100 GB", "Email and chat, weekdays"],
               ["Premium", "$30", "1 TB", "Phone, around the clock"]]
    zh = [["套餐", "月费", "存储空间", "客服"], ["基础版", "35元", "10GB", "仅邮件"],
          ["标准版", "88元", "100GB", "邮件和在线客服"], ["旗舰版", "218元", "1TB", "全天候电话"]]
    SimpleDocTemplate(str(path), pagesize=(595, 842), invariant=True).build([
        Paragraph("Each plan is billed monthly. The table below lists what each plan includes.",
                  normal), Spacer(1, 12),
        Table(english, style=table_style), Spacer(1, 12),
        Paragraph("All prices include tax.", normal), Spacer(1, 12),
        Paragraph("下表列出各套餐的价格。", chinese), Spacer(1, 12),
        Table(zh, style=[*table_style, ("FONTNAME", (0, 0), (-1, -1), "STSong-Light")])])
    return path


def test_a_pdf_table_drawn_with_ruling_lines_is_one_block_of_rows(tmp_path: Path) -> None:
    """pdfminer read a grid's cells column by column and glued neighbours ("Premium $30",
    "100 GB Email and chat, weekdays 1 TB"): which price was whose was lost."""
    path = _plans_pdf(tmp_path / "plans.pdf", [("GRID", (0, 0), (-1, -1), 0.5, colors.black)])
    assert [b.text for b in read_document(Source(path, "plans.pdf")).blocks] == [
        "Each plan is billed monthly. The table below lists what each plan includes.",
        "Plan | Price per month | Storage | Support\nBasic | $5 | 10 GB | Email only\n"
        "Standard | $12 | 100 GB | Email and chat, weekdays\n"
        "Premium | $30 | 1 TB | Phone, around the clock",
        "All prices include tax.",
        "下表列出各套餐的价格。",
        "套餐 | 月费 | 存储空间 | 客服\n基础版 | 35元 | 10GB | 仅邮件\n"
        "标准版 | 88元 | 100GB | 邮件和在线客服\n旗舰版 | 218元 | 1TB | 全天候电话"]


def test_a_pdf_tables_borders_drawn_cell_by_cell_are_its_grid(tmp_path: Path) -> None:
    """Word draws a table's borders one cell's side at a time: no single line crosses the
    table, and yet it is a grid."""
    path = tmp_path / "word.pdf"
    pdf = canvas.Canvas(str(path), pagesize=(595, 842), invariant=True)
    pdf.setFont("Helvetica", 11)
    cells = [["Room", "Floor", "Seats"], ["Oak", "2", "12"], ["Pine", "3", "40"]]
    xs, ys = [72, 200, 300, 400], [700, 680, 660, 640]
    for r, row in enumerate(cells):
        for c, text in enumerate(row):
            x0, x1, y1, y0 = xs[c], xs[c + 1], ys[r], ys[r + 1]
            for a, b, d, e in [(x0, y1, x1, y1), (x0, y0, x1, y0), (x0, y0, x0, y1),
                               (x1, y0, x1, y1)]:
                pdf.line(a, b, d, e)
            pdf.drawString(x0 + 4, y0 + 6, text)
    pdf.showPage()
    pdf.save()
    assert [b.text for b in read_document(Source(path, "word.pdf")).blocks] == [
        "Room | Floor | Seats\nOak | 2 | 12\nPine | 3 | 40"]


def test_a_pdf_table_ruled_only_across_is_one_block_of_rows(tmp_path: Path) -> None:
    """The three-line table of Chinese papers (booktabs in LaTeX): a rule above, one under the
    header, one below, and no lines to find its columns by."""
    rules = [("LINEABOVE", (0, 0), (-1, 0), 1, colors.black),
             ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
             ("LINEBELOW", (0, -1), (-1, -1), 1, colors.black)]
    path = _plans_pdf(tmp_path / "plans.pdf", rules)
    texts = [b.text for b in read_document(Source(path, "plans.pdf")).blocks]
    assert texts[1] == ("Plan | Price per month | Storage | Support\nBasic | $5 | 10 GB | "
                        "Email only\nStandard | $12 | 100 GB | Email and chat, weekdays\n"
                        "Premium | $30 | 1 TB | Phone, around the clock")
    assert texts[4] == ("套餐 | 月费 | 存储空间 | 客服\n基础版 | 35元 | 10GB | 仅邮件\n"
                        "标准版 | 88元 | 100GB | 邮件和在线客服\n旗舰版 | 218元 | 1TB | 全天候电话")


def test_pdf_examples_in_frames_or_between_two_rules_are_no_table(tmp_path: Path) -> None:
    """A manual's examples, code beside its output, line up in columns as a table does: in
    frames one under the other (a frame's sides are no table's rules), or between two rules
    with no header ruled off. Read as tables, lshort-zh-cn's prose beside them was cut."""
    path = tmp_path / "manual.pdf"
    pdf = canvas.Canvas(str(path), pagesize=(595, 842), invariant=True)
    pdf.setFont("Helvetica", 11)
    for top in (760.0, 700.0):  # two framed examples, one under the other (frames of 4 lines)
        for x0, y0, x1, y1 in [(72, top + 10, 522, top + 10), (72, top - 40, 522, top - 40),
                               (72, top - 40, 72, top + 10), (522, top - 40, 522, top + 10)]:
            pdf.line(x0, y0, x1, y1)
        pdf.drawString(80, top - 20, "\\section{Intro}" if top > 720 else "\\emph{stress}")
        pdf.drawString(330, top - 20, "1 Intro" if top > 720 else "stress")
    pdf.line(72, 600, 522, 600)  # and two between rules
    for y, code, output in [(580, "\\textbf{bold}", "bold"), (560, "\\textit{slanted}", "slanted")]:
        pdf.drawString(80, y, code)
        pdf.drawString(330, y, output)
    pdf.line(72, 540, 522, 540)
    pdf.showPage()
    pdf.save()
    texts = [b.text for b in read_document(Source(path, "manual.pdf")).blocks]
    assert not any(" | " in text for text in texts), texts
    read = " ".join(texts)
    assert all(part in read for part in ("\\section{Intro}", "1 Intro", "\\textbf{bold}"))


def test_pdf_gridlines_around_empty_cells_are_no_table(tmp_path: Path) -> None:
    """A chart's gridlines or a drawing make grids too; their cells hold (almost) no text."""
    path = tmp_path / "chart.pdf"
    pdf = canvas.Canvas(str(path), pagesize=(595, 842), invariant=True)
    pdf.setFont("Helvetica", 11)
    pdf.drawString(72, 760, "Sales rose every quarter of the year.")
    for i in range(6):  # a 5 x 5 grid of gridlines
        pdf.line(100 + 60 * i, 400, 100 + 60 * i, 700)
        pdf.line(100, 400 + 60 * i, 400, 400 + 60 * i)
    pdf.drawString(110, 680, "Q1")
    pdf.drawString(350, 420, "Q4")
    pdf.showPage()
    pdf.save()
    texts = [b.text for b in read_document(Source(path, "chart.pdf")).blocks]
    assert texts[0] == "Sales rose every quarter of the year."
    assert {"Q1", "Q4"} <= set(texts) and not any(" | " in text for text in texts)


def test_pdf_footnote_marks_and_listing_line_numbers_are_left_out(tmp_path: Path) -> None:
    """Small numbers that mark a footnote ("同类软件8.") or number a listing's lines ("1 mkdir")
    split words and numbers; an exponent after a letter is kept."""
    path = tmp_path / "guide.pdf"
    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    pdf = canvas.Canvas(str(path), pagesize=(595, 842), invariant=True)

    def pieces(y: float, parts: list[tuple[str, str, float, float]]) -> None:
        x = 72.0
        for text, font, size, rise in parts:
            pdf.setFont(font, size)
            pdf.drawString(x, y + rise, text)
            x += pdfmetrics.stringWidth(text, font, size)

    pieces(740, [("建议删除它并更换其他同类软件", "STSong-Light", 11, 0),
                 ("8", "Helvetica", 7, 4), ("。", "STSong-Light", 11, 0)])
    pieces(700, [("1", "Courier", 6, 1), (" mkdir C:\\temp", "Courier", 9, 0)])
    pieces(660, [("The energy is E = mc", "Helvetica", 11, 0), ("2", "Helvetica", 7, 4),
                 (" in joules.", "Helvetica", 11, 0)])
    pdf.showPage()
    pdf.save()
    assert [b.text for b in read_document(Source(path, "guide.pdf")).blocks] == [
        "建议删除它并更换其他同类软件。", "mkdir C:\\temp", "The energy is E = mc2 in joules."]


def test_pdf_glyphs_without_unicode_are_tex_text_where_known_else_left_out() -> None:
    """pdfminer wrote "(cid:12)nd" for "find" (TeX's Computer Modern fonts give no Unicode for
    their ligatures, Greek or symbols) and "(cid:136)" for a Type 3 bullet."""
    from bundler.knowledge.pdffile import undefined_glyph

    assert undefined_glyph("BFYFBU+CMR10", 12) == "fi"
    assert undefined_glyph("CMBX12", 14) == "ffi"
    assert undefined_glyph("PHAXZW+CMMI10", 11) == "α"
    assert undefined_glyph("WJOKFW+CMSY10", 1) == "·"
    assert undefined_glyph("HDHNHN+CMEX10", 12) == ""
    assert undefined_glyph("CMTT10", 12) == ""
    assert undefined_glyph("unknown", 136) == ""
    assert undefined_glyph("BRRBAA+SimSun", 3373) == ""


def test_encrypted_pdf_is_named_as_encrypted(tmp_path: Path) -> None:
    path = _pdf(tmp_path / "secret.pdf", [["Top secret text."]], encrypt="hunter2")
    with pytest.raises(DocumentError, match=r"^secret\.pdf: the PDF is encrypted"):
        read_document(Source(path, "secret.pdf"))


def test_pdf_with_only_an_image_is_named_as_a_scan(tmp_path: Path) -> None:
    image = tmp_path / "scan.png"
    Image.new("RGB", (200, 100), "white").save(image)
    path = tmp_path / "scan.pdf"
    pdf = canvas.Canvas(str(path))
    pdf.drawImage(str(image), 72, 600, width=200, height=100)
    pdf.showPage()
    pdf.save()
    with pytest.raises(DocumentError, match=r"^scan\.pdf: no text layer \(a scanned PDF\?\)"):
        read_document(Source(path, "scan.pdf"))


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "empty.txt: empty file"),
        ("blank.md", b"  \n\n \t\n", "blank.md: empty file"),
        ("tags.html", b"<html><script>x()</script></html>", "tags.html: no text in it"),
        ("image.txt", bytes(range(256)) * 8, "image.txt: not text in any known encoding"),
        ("fake.pdf", b"%PDF-1.4 garbage", "fake.pdf: not a readable PDF"),
        ("fake.docx", b"PK\x03\x04 not really a zip", "fake.docx: not a readable .docx file"),
        ("locked.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600),
         "locked.docx: encrypted (password-protected) or an old binary .doc"),
    ],
)
def test_unusable_files_raise_one_line_naming_the_file_and_why(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DocumentError) as raised:
        read_document(Source(path, name))
    assert str(raised.value).startswith(reason)
    assert "\n" not in str(raised.value)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gone.txt"
    with pytest.raises(DocumentError, match=r"^gone\.txt: cannot read it"):
        read_document(Source(path, "gone.txt"))


def test_find_documents_walks_folders_sorted_and_skips_hidden_and_unknown_files(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    (docs / "b").mkdir(parents=True)
    (docs / ".git").mkdir()
    (docs / "b" / "z.md").write_text("z")
    (docs / "a.TXT").write_text("a")
    (docs / "b" / "c.html").write_text("c")
    (docs / ".hidden.md").write_text("h")
    (docs / ".git" / "x.md").write_text("x")
    (docs / "photo.jpg").write_bytes(b"\xff\xd8")
    single = tmp_path / "extra.pdf"
    single.write_bytes(b"%PDF")
    found, skipped = find_documents([docs, single, tmp_path / "missing"])
    assert [(s.relpath, s.path) for s in found] == [
        ("a.TXT", docs / "a.TXT"), ("b/c.html", docs / "b" / "c.html"),
        ("b/z.md", docs / "b" / "z.md"), ("extra.pdf", single),
    ]
    assert [(s.path.name, s.reason) for s in skipped] == [
        ("photo.jpg", "not a supported document type (.jpg)"),
        ("missing", "no such file or folder"),
    ]


def test_two_folders_holding_the_same_file_name_are_named_apart(tmp_path: Path) -> None:
    # Both named README.md, the second took the first's passages in the index (issue #24).
    for package in ("pkgA", "pkgB"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "README.md").write_text(f"# {package}\n\nAbout {package}.")
    (tmp_path / "README.md").write_text("# top\n\nThe single file.")
    found, _ = find_documents([tmp_path / "pkgA", tmp_path / "pkgB", tmp_path / "README.md"])
    assert [s.relpath for s in found] == ["pkgA/README.md", "pkgB/README.md", "README.md"]
    os.chdir(tmp_path / "pkgA")  # "--knowledge ." names its folder too (was "/README.md")
    found, _ = find_documents([Path("."), tmp_path / "pkgB"])
    assert [s.relpath for s in found] == ["pkgA/README.md", "pkgB/README.md"]
    again = tmp_path / "again"
    (again / "pkgA").mkdir(parents=True)
    (again / "pkgA" / "README.md").write_text("# pkgA again\n\nAnother one.")
    found, _ = find_documents([tmp_path / "pkgA", again, tmp_path / "pkgB"])
    assert [s.relpath for s in found] == ["pkgA/README.md", "pkgA/README.md (2)",
                                         "pkgB/README.md"]


def test_a_saved_pages_files_folder_is_not_read_as_documents(tmp_path: Path) -> None:
    # "Web page, complete" saves the page's iframes (ads, chat widgets) as .html files beside
    # its images and scripts; they were indexed as documents of their own.
    (tmp_path / "Reset a router.html").write_text("<h1>Reset</h1><p>Hold the button.</p>")
    files = tmp_path / "Reset a router_files"
    files.mkdir()
    (files / "saved_resource.html").write_text("<p>Cheap routers! Buy today.</p>")
    (tmp_path / "notes_files").mkdir()  # no notes.html beside it: an ordinary folder
    (tmp_path / "notes_files" / "a.txt").write_text("A note.")
    found, skipped = find_documents([tmp_path])
    assert [s.relpath for s in found] == ["Reset a router.html", "notes_files/a.txt"]
    assert [(s.path.name, s.reason) for s in skipped] == [
        ("Reset a router_files", "the files of the saved page Reset a router")]


def test_a_pipe_named_like_a_document_is_skipped_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")  # reading it would block the build forever
    (tmp_path / "a.md").write_text("text")
    found, skipped = find_documents([tmp_path])
    assert [s.relpath for s in found] == ["a.md"]
    assert [(s.path.name, s.reason) for s in skipped] == [("pipe.txt", "not a regular file")]


def test_find_documents_reads_duplicates_once_and_survives_a_symlink_loop(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "one.md").write_text("same words")
    (docs / "sub" / "copy.md").write_text("same words")
    os.symlink(docs, docs / "sub" / "loop")
    found, skipped = find_documents([docs, docs / "one.md"])
    assert [s.relpath for s in found] == ["one.md"]
    reasons = {(s.path.relative_to(tmp_path).as_posix(), s.reason) for s in skipped}
    assert reasons == {
        ("docs/sub/copy.md", f"same content as {docs / 'one.md'}"),
        ("docs/sub/loop", "folder already read (symlink loop?)"),
        ("docs/one.md", f"same content as {docs / 'one.md'}"),
    }


def test_pdf_body_lines_repeated_on_every_page_are_kept(tmp_path: Path) -> None:
    body = ["Chapter text differs here.", "", "Warning: unplug the router first.", "", "End."]
    pages = [[f"Page body {n}.", *body] for n in (1, 2, 3)]
    path = _pdf(tmp_path / "warn.pdf", pages, header="Manual")
    texts = [block.text for block in read_document(Source(path, "warn.pdf")).blocks]
    assert texts.count("Warning: unplug the router first.") == 3


def test_pdf_watermarks_in_large_or_rotated_type_on_every_page_are_dropped(tmp_path: Path) -> None:
    # "INTERNAL USE ONLY" across the middle of each page was a passage of every page.
    path = tmp_path / "policy.pdf"
    pdf = canvas.Canvas(str(path), pagesize=(595, 842), invariant=True)
    for number in (1, 2, 3):
        pdf.setFont("Helvetica", 11)
        pdf.drawString(72, 700, f"Rule {number}: backups are kept for {number + 6} years.")
        pdf.setFont("Helvetica", 40)
        pdf.drawCentredString(297, 421, "INTERNAL USE ONLY")
        pdf.saveState()
        pdf.translate(297, 200)
        pdf.rotate(45)
        pdf.setFont("Helvetica", 12)
        pdf.drawCentredString(0, 0, "DRAFT")
        pdf.restoreState()
        pdf.showPage()
    pdf.save()
    assert _read(path) == [f"Rule {n}: backups are kept for {n + 6} years." for n in (1, 2, 3)]


def test_badges_images_layout_tags_and_rst_directives_are_dropped_before_chunking() -> None:
    from bundler.knowledge.textfile import read_markdown, read_plain

    markdown = read_markdown(
        "# cn2an\n\n"
        "[![Pypi](https://img.shields.io/pypi/v/cn2an.svg)](https://pypi.org/project/cn2an/)\n"
        "[![MIT](https://img.shields.io/badge/license-MIT-green.svg)](https://x.org/LICENSE)\n\n"
        '<p align="center"><img width="350" src="logo.png" alt="HTTPX"></p>\n\n'
        "`cn2an` 是一个快速转化中文数字和阿拉伯数字的工具包！\n\n---\n\n"
        "See the [docs](https://example.org/docs) ![shot](shot.png) for more.\n\n"
        "```shell\npip install cn2an -U\n```\n")
    assert [b.text for b in markdown] == [
        "cn2an 是一个快速转化中文数字和阿拉伯数字的工具包！", "See the docs for more.",
        "pip install cn2an -U"]
    rst = read_plain(
        "汉字拼音转换工具\n================\n\n|Build| |Coverage| |Pypi version|\n\n"
        "将汉字转为拼音。\n\n.. code-block:: bash\n\n    pip install pypinyin\n\n"
        ".. |Build| image:: https://img.shields.io/circleci/project/x.svg\n"
        "   :target: https://circleci.com/gh/x\n"
        ".. _pinyin-data: https://github.com/mozillazg/pinyin-data\n"
        "__ https://github.com/hotoo/pinyin\n")
    assert [b.text for b in rst] == ["汉字拼音转换工具", "将汉字转为拼音。", "pip install pypinyin"]


def test_raw_html_in_markdown_keeps_its_text_and_loses_comments_scripts_and_link_targets() -> None:
    from bundler.knowledge.textfile import read_markdown

    markdown = read_markdown(
        "# Models\n\n<!-- a maintainer's note\nover two lines -->\n"
        "<table><tr><th>Model</th><th>Size</th></tr>\n<tr><td>densenet</td><td>4.7 M</td></tr>"
        "</table>\n\n<details><summary>More</summary>\n\nThe <code>lite</code> model is "
        "faster.\n\n</details>\n\n<script>track()</script><style>p {}</style>\n\n"
        "Read the [guide][1].\n\n[1]: https://example.org/guide \"Guide\"\n")
    assert [b.text for b in markdown] == [
        "Model | Size", "densenet | 4.7 M", "More", "The lite model is faster.",
        "Read the [guide][1]."]


def test_docs_site_markdown_loses_imports_components_admonition_marks_and_shortcodes() -> None:
    # Docusaurus, MkDocs and Hugo pages as their sources ship: every passage of the probe's
    # docs-site file carried "import Tabs from…", ":::tip", "{{< figure >}}" or "&lt;".
    from bundler.knowledge.textfile import read_markdown

    markdown = read_markdown(
        "+++\ntitle = \"Deploying\"\ndraft = false\n+++\n"
        "import Tabs from '@theme/Tabs';\n\n# Deploying {#deploying}\n\n"
        "!!! note \"Port numbers\"\n    The server listens on port 8123.\n\n"
        ":::tip 提示\n部署前请先备份配置文件。\n:::\n\n"
        "<Tabs>\n  <TabItem value=\"linux\" label=\"Linux\">\nRun `./server --daemon`.\n"
        "  </TabItem>\n</Tabs>\n\n{{< figure src=\"/img/arch.png\" >}}\n\n"
        "Compare a &lt; b &amp;&amp; c, not `a &lt; b`; end a line with `<br>`.\n\n"
        "Ask at a@b.org?x=1&copy=2.\n\n:::{note}\nUse {func}`attrs.define`, `GET /r/{id}`.\n:::\n\n"
        "{pep}`557` added Data Classes.\n\n"
        "1. Cast it:\n\n    ```cpp\n    Invoke(implicit_cast<Closure*>(done));\n    ```\n")
    assert [(b.headings, b.text) for b in markdown] == [
        (("Deploying",), "Port numbers"),
        (("Deploying",), "The server listens on port 8123."),
        (("Deploying",), "提示"),
        (("Deploying",), "部署前请先备份配置文件。"),
        (("Deploying",), "Run ./server --daemon."),
        (("Deploying",), "Compare a < b && c, not a &lt; b; end a line with <br>."),
        (("Deploying",), "Ask at a@b.org?x=1&copy=2."),
        (("Deploying",), "Use attrs.define, GET /r/{id}."),  # MyST: ":::{note}", a role
        (("Deploying",), "PEP 557 added Data Classes."),
        (("Deploying",), "1. Cast it:"),
        (("Deploying",), "Invoke(implicit_cast<Closure*>(done));"),  # a list item's fence
    ]
