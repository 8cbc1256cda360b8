"""The build tool: turns a GGUF into one executable (see bundler.cli)."""

from runtime import __version__

__all__ = ["__version__"]
