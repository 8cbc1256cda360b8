"""What a reader of a rendered page never sees, dropped from text and Markdown before chunking:
badges and other images, HTML layout tags, reStructuredText directives and link targets.

READMEs as they ship (issue #24: Chinese web articles, PyPI packages' READMEs) open with rows of
badges (`[![PyPI](https://img.shields.io/...)](https://pypi.org/...)`, `.. |Build| image::`), wrap
logos in `<p align="center"><img ...></p>` and end with link targets. Left in, they fill chunks
with URLs: the embedder's 256 tokens hold less of the text, full text matches "pypi" and
"github" everywhere, and a small model copies a URL as its answer. Link text is text and stays;
code stays (a command is often the answer).
"""

from __future__ import annotations

import html
import re

from runtime.knowledge.rows import CELL

# A linked image (a badge), then a bare image: Markdown's, and HTML's <img>.
_MD_IMAGE = re.compile(r"\[!\[[^\]]*\]\([^)]*\)\]\([^)]*\)|!\[[^\]]*\]\([^)]*\)")
_HTML_IMAGE = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_GAP = re.compile(r"(?<=\S) {2,}")
# Layout tags around text (the text stays), and a table cell's end before the next cell (the
# cells stay apart: "A | B").
_HTML_TAG = re.compile(r"</?(?:p|a|div|span|br|picture|source|center|strong|em|b|i|u|s|sub|sup|"
                       r"small|big|font|code|kbd|del|ins|h[1-6]|table|thead|tbody|tfoot|tr|td|"
                       r"th|details|summary|ul|ol|li|dl|dt|dd|blockquote|hr)\b[^>]*>",
                       re.IGNORECASE)
_HTML_CELL = re.compile(r"</t[dh]>\s*<t[dh]\b[^>]*>", re.IGNORECASE)
_HTML_ROW_END = re.compile(r"</tr\s*>", re.IGNORECASE)
# What a rendered page never shows at all: comments, scripts and styles (over several lines).
_HTML_HIDDEN = re.compile(r"<!--.*?-->|<(script|style)\b[^>]*>.*?</\1\s*>",
                          re.IGNORECASE | re.DOTALL)
# A Markdown link reference definition: "[1]: https://..." (its label is used in the text).
# Its target must look like a link: "[1]: 先在测试环境验证" and footnotes ("[^1]: ...") are text.
_MD_LINK_DEFINITION = re.compile(
    r"^ {0,3}\[[^\]^][^\]]*\]:\s*(?:<[^>]*>|[A-Za-z][\w+.-]*://\S*|mailto:\S+|www\.\S+|"
    r"\.{0,2}/\S*|#\S*)(?:\s+[\"'(].*)?\s*$")
# A fenced code block's opening or closing line (indented too: a fence in a list item).
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
# reStructuredText: image and figure directives with their options, substitution definitions,
# link targets (`.. _name: url`, `__ url`), the table of contents, a code block's directive
# line (its indented code stays), and a line of substitution references only (`|Build| |PyPI|`).
_RST_LINE = re.compile(
    r"^\s*(?:\.\.\s+(?:\|[^|]+\|\s+)?(?:image|figure|raw|contents|code-block|code|sourcecode)"
    r"::|\.\.\s+_[^:]*:|\.\.\s+\|[^|]+\|\s+replace::|__\s+\S+\s*$)"
    # a directive's option, indented under it (":class:`Session` objects…" is a sentence)
    r"|^\s+:(?:target|alt|width|height|align|scale|class):(?:\s|$)")
_RST_SUBSTITUTIONS = re.compile(r"^\s*(?:\|[^|\s][^|]*\|\s*)+$")
# Docs-site Markdown (Docusaurus MDX, MkDocs, Hugo): module imports and exports, components
# (<Tabs>, <TabItem label="Linux">: their text stays), admonition markers (":::tip Title",
# ":::{note}", "!!! note \"Title\"": the title stays, on a line of its own) and shortcodes
# ({{< figure >}}).
_MDX_MODULE = re.compile(r"^(?:import\s[^'\"]*?['\"][^'\"]+['\"]"
                         r"|export\s+(?:default|const|function)\b.*);?\s*$")
_COMPONENT = re.compile(r"</?[A-Z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)*(?:\s[^<>]*)?/?>")
_ADMONITION = re.compile(
    r"^\s*(?::::+\s*(?:\{[\w-]+\}|[\w-]*)(?:\[[^\]]*\])?|(?:!!!|\?\?\?\+?)\s*[\w-]+)\s*(.*?)\s*$")
# A MyST role before a code span ("{meth}`__getstate__`"): the span is what a reader sees.
_ROLE = re.compile(r"(?<![^\s(])\{[\w:-]+\}(?=`)")
_SHORTCODE = re.compile(r"\{\{[<%].*?[%>]\}\}")
# A character reference as Markdown reads it: named ones end in ";" ("&copy=2" is text).
_CHAR_REF = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# An inline code span: what is in one is shown as written (`<br>` is the sample, not a tag).
_CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)")
# A section title's under- or overline in reStructuredText (plain text only: in Markdown it
# makes the line above a heading).
_ADORNMENT = re.compile(r"^\s*([=\-~^+*#\"'`:.])\1{2,}\s*$")


def strip_adornments(text: str) -> str:
    """Plain text without reStructuredText's title adornment lines."""
    return "\n".join(line for line in text.split("\n") if not _ADORNMENT.match(line))


def strip_boilerplate(text: str, markdown: bool = False) -> str:
    """`text` without images, layout tags (a table's rows kept apart), HTML comments, scripts
    and styles, link targets and directive lines; a line left empty by that is dropped (so
    paragraphs do not split where a badge was). Fenced code blocks and inline code spans are
    kept as they are: HTML or CSS in a code sample is the sample. Markdown also loses what
    docs sites add (_MDX_MODULE, _COMPONENT, _ADMONITION, _SHORTCODE), and its character
    references are read ("&lt;" is "<")."""
    out: list[str] = []
    prose: list[str] = []
    fence = ""  # the open fence's marker ("```"), "" outside a fenced block
    for line in text.split("\n"):
        if not fence:
            if mark := FENCE.match(line):
                out += _stripped("\n".join(prose), markdown) if prose else []
                prose, fence = [], mark.group(1)
                out.append(line)
            else:
                prose.append(line)
            continue
        out.append(line)
        if closes(fence, line):
            fence = ""
    out += _stripped("\n".join(prose), markdown) if prose else []
    return "\n".join(out)


def closes(fence: str, line: str) -> bool:
    """Whether `line` closes the code block that `fence` ("```") opened: a fence of the same
    character, at least as long. One with a language after it closes it too: READMEs that
    never close a block in a list item open the next with "```bash" (the item's end closes it
    when rendered), and reading on as code would swallow the rest of the file."""
    mark = FENCE.match(line)
    return mark is not None and mark.group(1)[0] == fence[0] and len(mark.group(1)) >= len(fence)


def _stripped(text: str, markdown: bool) -> list[str]:
    """strip_boilerplate's work on text outside fenced code, as lines."""
    out = []
    text = _HTML_HIDDEN.sub(lambda m: "\n" * m.group().count("\n"), text)
    text = _HTML_ROW_END.sub("\n\n", text)  # a table row is a paragraph of its own
    for line in text.split("\n"):
        if _RST_LINE.match(line) or _RST_SUBSTITUTIONS.match(line) or \
                _MD_LINK_DEFINITION.match(line) or (markdown and _MDX_MODULE.match(line)):
            continue
        if markdown and (admonition := _ADMONITION.match(line)):
            out += [admonition.group(1).strip("\"'"), ""]  # its title, a paragraph of its own
            continue
        line = _ROLE.sub(_role, line) if markdown else line
        pieces, end = [], 0  # code spans as written, the text around them cleaned
        for span in _CODE_SPAN.finditer(line):
            pieces += [_cleaned(line[end:span.start()], markdown), span.group()]
            end = span.end()
        cleaned = "".join(pieces) + _cleaned(line[end:], markdown)
        if cleaned != line:
            cleaned = _GAP.sub(" ", cleaned)  # where an image stood between two words
        if cleaned.strip() or not line.strip():
            out.append(cleaned.rstrip() if cleaned.strip() else "")
    return out


def _role(found: re.Match[str]) -> str:
    """A MyST role's name is left out, but for the ones that read as words ({pep}`557`)."""
    name = found.group().strip("{}").lower()
    return f"{name.upper()} " if name in ("pep", "rfc") else ""


def _cleaned(text: str, markdown: bool) -> str:
    text = _HTML_TAG.sub("", _HTML_IMAGE.sub("", _MD_IMAGE.sub("", _HTML_CELL.sub(CELL, text))))
    text = text.replace("&nbsp;", " ")  # a spacer paragraph (<p>&nbsp;</p>)
    if markdown:
        text = _SHORTCODE.sub("", _COMPONENT.sub("", text))
        text = _CHAR_REF.sub(lambda ref: html.unescape(ref.group()), text)
    return text
