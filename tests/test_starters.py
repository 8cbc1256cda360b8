"""Starters for a knowledge bundle built without --starter: questions about its headings."""

from __future__ import annotations

from bundler.knowledge.document import Block, Document
from bundler.knowledge.starters import question_about, suggest_starters


def doc(relpath: str, title: str, *headings: tuple[str, ...]) -> Document:
    return Document(relpath, title, [Block("text", h) for h in headings])


def test_starters_ask_about_headings_taking_documents_in_turn():
    docs = [doc("manual.md", "Printer manual", ("Printer manual", "Installing on Linux"),
                ("Printer manual", "Installing on Linux"), ("Printer manual", "Paper sizes"),
                ("Printer manual", "Toner")),
            doc("保修.txt", "保修说明", ("保修",), ("保修", "退换货政策")),
            doc("faq.html", "FAQ", ("How do I reset the printer?",))]
    assert suggest_starters(docs) == [
        "What do the documents say about “Installing on Linux”?",
        "文档中关于“保修”是怎么说的？",
        "How do I reset the printer?",
        "What do the documents say about “Paper sizes”?",
    ]


def test_noise_headings_are_skipped_and_a_document_without_headings_offers_its_title():
    docs = [doc("a.md", "A", ("1.",), ("Contents",), ("x" * 80,)),
            doc("b.txt", "Warranty terms"), doc("c.txt", "c.txt")]
    assert suggest_starters(docs) == ["What do the documents say about “Warranty terms”?"]


def test_no_documents_no_starters():
    assert suggest_starters([]) == []
    assert question_about("为什么打印机不工作？") == "为什么打印机不工作？"


# ---- build --starter


def test_build_bakes_starters_into_the_manifest(runner, tiny_gguf, tmp_path, built):
    from bundler.cli import main
    from runtime.artifact.manifest import read_manifest_at

    out = tmp_path / "s.llamabundle"
    result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(out), "--starter",
                                  "How do I  install it?", "--starter", "保修多久？"])
    assert result.exit_code == 0, result.output
    assert read_manifest_at(str(out)).starters == ["How do I install it?", "保修多久？"]


def test_build_refuses_bad_starters_before_writing(runner, tiny_gguf, tmp_path):
    from bundler.cli import main

    out = tmp_path / "s.llamabundle"
    for args in (["--starter", "  "], ["--starter", "x" * 201],
                 [a for i in range(7) for a in ("--starter", f"q{i}?")]):
        result = runner.invoke(main, ["build", str(tiny_gguf), "-o", str(out), *args])
        assert result.exit_code == 2 and "--starter" in result.output
        assert not out.exists()
