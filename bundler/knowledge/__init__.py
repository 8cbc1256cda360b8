"""Knowledge bundles: the documents and the embedding model that go into an artifact."""
