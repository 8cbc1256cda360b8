"""The HTTP side: security guard, errors, streaming, and one module per API dialect."""
