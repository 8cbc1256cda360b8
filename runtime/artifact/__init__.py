"""The artifact's format, in one place: bundler/ writes it, runtime/ reads it."""
