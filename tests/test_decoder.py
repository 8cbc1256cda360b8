"""The decoder against the real llama.cpp (a tiny random model): long answers under a lazy tool
grammar, admission when the KV cache is shared, abandoned requests, and errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).parent

LONG_ANSWER = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from tiny_model import make_tiny_gguf
from runtime.chat.tools import tools_from_openai
from runtime.generation import Finish, Sampling
from runtime.llama import cpu
from runtime.llama.bindings import llama_cpp
from runtime.llama.decoder import Decoder
from runtime.llama.model import Tokenizer, load_model, new_context
from runtime.llama.tool_grammar import tool_grammar

cpu.load()
llama_cpp.llama_backend_init()
model = load_model(str(make_tiny_gguf(Path({path!r}), long_pieces=200)), 0)
tokenizer = Tokenizer(model)
llama_cpp.llama_vocab_is_eog = lambda vocab, token: False  # a model that never stops
decoder = Decoder(new_context(model, 1024, 1), tokenizer.vocab, 1024, 64)
tools = tools_from_openai([{{"type": "function", "function": {{
    "name": "f", "parameters": {{"type": "object", "properties": {{}}}}}}}}])
for family in ("hermes", "mistral", "generic"):
    events = list(decoder.generate(tokenizer.tokenize("the cat"), Sampling(seed=1), 400, (),
                                   tool_grammar(tools, family, "auto")))
    assert isinstance(events[-1], Finish) and events[-1].reason == "length", events[-1]
    print(family, sum(len(e) for e in events if isinstance(e, str)))
"""


def test_a_long_answer_under_a_lazy_tool_grammar_does_not_crash(tmp_path):
    """tool_choice auto: llama.cpp's lazy grammar matched its trigger against the whole answer
    with std::regex_match, recursing once per character; past ~40k characters the stack
    overflowed and the server died (SIGSEGV). 400 tokens, over 60k characters here."""
    script = LONG_ANSWER.format(tests=str(TESTS), path=str(tmp_path / "long.gguf"))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    for line in proc.stdout.split("\n")[:3]:
        assert int(line.split()[1]) > 60_000, proc.stdout
