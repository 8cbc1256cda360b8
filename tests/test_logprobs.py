"""The decoder's extras: log-probabilities as llama.cpp's samplers compute them match a plain
softmax over the same logits, asking for them never changes the answer, and control tokens
show only when asked."""

from __future__ import annotations

import ctypes
import json
import math

import pytest

from runtime.generation import Sampling
from runtime.llama import cpu
from runtime.llama.bindings import llama_cpp
from runtime.llama.candidates import Candidates, LogprobReader
from runtime.llama.decoder import Decoder
from runtime.llama.grammar import schema_grammar
from runtime.llama.model import Tokenizer, load_model, new_context


@pytest.fixture(scope="module")
def model(tiny_gguf):
    cpu.load()
    llama_cpp.llama_backend_init()
    model = load_model(str(tiny_gguf), 0)
    yield model
    llama_cpp.llama_model_free(model)


@pytest.fixture(scope="module")
def decoder(model):
    # its thread keeps the context: never freed before the process ends
    tokenizer = Tokenizer(model)
    return Decoder(new_context(model, 256, 1), tokenizer.vocab, 256, 64), tokenizer


def test_reader_matches_a_softmax_over_the_logits(model, decoder):
    dec, tokenizer = decoder
    ctx = new_context(model, 256, 1)  # its own: the decoder's thread owns that one
    prompt = tokenizer.tokenize("the cat sat on")
    tokens = (llama_cpp.llama_token * len(prompt))(*prompt)
    assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(tokens, len(prompt))) == 0
    n = tokenizer.n_vocab
    logits = ctypes.cast(llama_cpp.llama_get_logits_ith(ctx, -1),
                         ctypes.POINTER(ctypes.c_float))[:n]
    top = max(logits)
    log_sum = top + math.log(sum(math.exp(x - top) for x in logits))
    reader = LogprobReader(5, dec._piece)
    try:
        entry = reader.read(Candidates(ctx, n), -1, 100)
    finally:
        reader.close()
        llama_cpp.llama_free(ctx)
    assert entry.logprob == pytest.approx(logits[100] - log_sum, abs=1e-4)
    best = sorted(range(n), key=lambda i: -logits[i])[:5]
    assert [tokenizer.detokenize([i]) for i in best] == [t.token for t in entry.top]
    assert [t.logprob for t in entry.top] == pytest.approx(
        [logits[i] - log_sum for i in best], abs=1e-4)


def test_logprobs_do_not_change_the_answer_and_cover_every_token(decoder):
    dec, tokenizer = decoder
    prompt = tokenizer.tokenize("the dog ran")
    sampling = Sampling(temperature=0.9, seed=42)
    plain = list(dec.generate(prompt, sampling, 12, ()))
    with_logprobs = list(dec.generate(prompt, sampling, 12, (), logprobs=3))
    assert plain[:-1] == with_logprobs[:-1]
    finish = with_logprobs[-1]
    assert plain[-1].logprobs is None and len(finish.logprobs) == finish.completion_tokens
    for entry in finish.logprobs:
        assert entry.logprob <= 0 and len(entry.top) == 3
        assert [t.logprob for t in entry.top] == sorted((t.logprob for t in entry.top),
                                                        reverse=True)
        assert entry.logprob <= entry.top[0].logprob


def test_control_tokens_show_only_when_made_visible(decoder):
    # what the engine does for tool markers that are control tokens (Mistral's [TOOL_CALLS],
    # Llama's <|python_tag|>): the parser must see them, and only them
    dec, _ = decoder
    assert llama_cpp.llama_vocab_is_control(dec.vocab, 1)
    assert dec._piece(1) == b"" and dec._piece(1, special=True) == b"<s>"


@pytest.mark.parametrize("seed", range(4))
def test_grammar_checked_sampling_keeps_random_weights_to_the_schema(decoder, seed):
    # the grammar checks the free pick and filters the vocabulary only when it refuses it
    dec, tokenizer = decoder
    schema = {"type": "object", "properties": {"unit": {"enum": ["celsius", "fahrenheit"]},
                                               "ok": {"type": "boolean"}},
              "required": ["unit", "ok"], "additionalProperties": False}
    events = list(dec.generate(tokenizer.tokenize("the cat"), Sampling(temperature=1.5,
                                                                        seed=seed),
                               200, (), schema_grammar(schema)))
    value = json.loads("".join(e for e in events if isinstance(e, str)))
    assert value["unit"] in ("celsius", "fahrenheit") and isinstance(value["ok"], bool)
    assert events[-1].reason == "stop"
