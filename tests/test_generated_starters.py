"""Starter questions for documents without headings: written at build time by the bundled chat
model and kept only when retrieval answers them from their own passage; a base model (no chat
template) gets questions about the documents' titles instead, and the build says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundler.knowledge.chunk import Chunk
from bundler.knowledge.document import Block, Document
from bundler.knowledge.index import KnowledgeOptions, StarterOptions, build_knowledge
from bundler.knowledge.questions import best_passages, clean
from bundler.knowledge.service import ChatModel
from bundler.knowledge.starters import title_questions
from bundler.model_source import resolve_model
from runtime.artifact.manifest import Manifest

PLAIN = Path(__file__).parent / "data" / "knowledge" / "plain"  # three files, no headings


def test_a_reply_becomes_one_question_in_the_passages_language():
    assert clean("Question: How often is the filter cleaned?\nIt is cleaned...", False) == \
        "How often is the filter cleaned?"
    assert clean("1. **What does error code E7 mean?**", False) == "What does error code E7 mean?"
    assert clean("“食堂周末开放吗？”", True) == "食堂周末开放吗？"
    assert clean("The filter is cleaned every two months.", False) is None  # not a question
    assert clean("食堂周末开放吗？", False) is None  # an English passage gets an English one
    assert clean("How often is the filter cleaned?", True) is None
    assert clean("Why? " + "x" * 200, False) is None  # "Why?" is too short a question
    assert clean("What " + "very " * 30 + "long?", False) is None


def test_the_passages_asked_about_are_the_richest_of_each_document_in_turn():
    def chunk(doc: str, text: str) -> Chunk:
        return Chunk(doc, doc, "", text, (), None)

    rich = " ".join(f"word{i}" for i in range(30))
    chunks = [chunk("a.txt", "short line"), chunk("a.txt", rich), chunk("a.txt", rich + " more"),
              chunk("b.txt", rich), chunk("c.txt", "too few terms here")]
    assert best_passages(chunks, 3) == [3, 4, 2]  # a's richest, b's, then a's next


def test_titles_that_are_file_names_are_asked_about_as_words():
    docs = [Document("user_guide.txt", "user_guide.txt", [Block("Some English text.", ())]),
            Document("食堂.txt", "食堂.txt", [Block("公司食堂位于二号楼。", ())]),
            Document("notes.md", "Release notes", [Block("Version 2 adds export.", ())])]
    assert title_questions(docs) == ["What do the documents say about “user guide”?",
                                     "文档中关于“食堂”是怎么说的？",
                                     "What do the documents say about “Release notes”?"]


def _manifest(gguf: Path) -> Manifest:
    source = resolve_model(str(gguf))
    info = source.info
    assert info is not None and info.chat_template
    return Manifest(runtime_version="test", name=info.name, title=info.name,
                    model_id=source.model_id, architecture=info.architecture,
                    parameters=info.parameters, quantization=info.quantization,
                    context_length=info.context_length, gguf_chat_template=True,
                    chat_template=info.chat_template, chat_template_source="gguf")


@pytest.mark.slow
def test_the_instruct_model_writes_starters_that_retrieval_answers(instruct_gguf, built):
    chat = ChatModel(instruct_gguf, _manifest(instruct_gguf))
    result = build_knowledge(KnowledgeOptions([PLAIN], starters=StarterOptions(chat)))
    assert 3 <= len(result.starters) <= 4, (result.starters, result.starters_note)
    written = [s for s in result.starters if "documents say about" not in s and "关于“" not in s]
    assert len(written) >= 3, result.starters  # the model's, not the titles' fallback
    assert all(s.endswith(("?", "？")) for s in written)
    assert result.starters_note.startswith(f"Starters: {len(written)} written by the model"), \
        result.starters_note


def test_a_base_model_gets_questions_about_titles_and_the_build_says_why(built):
    options = StarterOptions(None, "the model has no chat template, so it is taken for a "
                             "base model")
    result = build_knowledge(KnowledgeOptions([PLAIN], starters=options))
    assert result.starters == ["What do the documents say about “bike lease”?",
                               "What do the documents say about “heat pump”?",
                               "文档中关于“食堂”是怎么说的？"]
    assert result.starters_note == (
        "Starters: not written by the model (the model has no chat template, so it is taken "
        "for a base model); 3 asked about headings or titles")


def test_builder_starters_mean_nothing_is_written(built):
    result = build_knowledge(KnowledgeOptions([PLAIN / "heat_pump.txt"], starters=None))
    assert result.starters == [] and result.starters_note == ""


def test_a_chat_model_that_does_not_load_leaves_the_titles_and_says_so(built, tmp_path):
    from fake import manifest

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))
    result = build_knowledge(KnowledgeOptions(
        [PLAIN], starters=StarterOptions(ChatModel(broken, manifest()))))
    assert len(result.starters) == 3 and "documents say about" in result.starters[0]
    assert result.starters_note.startswith(
        f"Starters: not written by the model ({broken}: the chat model did not load"), \
        result.starters_note
