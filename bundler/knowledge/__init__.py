"""Knowledge bundles at build time: finding and reading documents, chunking them."""

from bundler.knowledge.document import Block, Document, Skipped, Source
from bundler.knowledge.sources import find_documents, read_document

__all__ = ["Block", "Document", "Skipped", "Source", "find_documents", "read_document"]
