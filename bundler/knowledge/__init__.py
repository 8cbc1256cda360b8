"""Knowledge bundles at build time: the documents (found, read, chunked) and the embedding
model that go into an artifact."""

from bundler.knowledge.document import Block, Document, Skipped, Source
from bundler.knowledge.sources import find_documents, read_document

__all__ = ["Block", "Document", "Skipped", "Source", "find_documents", "read_document"]
