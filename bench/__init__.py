"""Side-by-side benchmark of a llamabundle artifact against llama.cpp's llama-server."""
