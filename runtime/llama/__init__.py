"""Everything that touches ctypes and llama.cpp: bindings, CPU dispatch, model, decoding,
embeddings. Nothing outside this package imports llama.cpp."""
