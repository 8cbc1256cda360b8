"""Fill-in-the-middle prompts in the model's own FIM tokens, laid out as llama.cpp's server lays
them (`format_infill`): other files first, in the repository-level form Qwen2.5-Coder was
trained on when the vocabulary has its tokens, then <PRE>prefix<SUF>suffix<MID>.

The prefix, suffix and files are tokenized without special tokens: code that happens to say
"<|fim_middle|>" stays text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.errors import RequestError
from runtime.generation import Infill
from runtime.llama.bindings import llama_cpp

REPO_NAME = "myproject\n"  # llama.cpp's: the model needs a project name, the client sends none
SNIPPET = "\n\n--- snippet ---\n\n"  # a file's start where the vocabulary has no file separator


@dataclass(frozen=True)
class FimTokens:
    pre: int
    suf: int
    mid: int
    rep: int | None  # a repository's name follows (Qwen2.5-Coder's <|repo_name|>)
    sep: int | None  # a file's name and text follow (<|file_sep|>)

    @classmethod
    def of(cls, vocab: Any) -> FimTokens | None:
        """The vocabulary's FIM tokens; None when it lacks any of prefix, suffix, middle."""
        pre, suf, mid = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
                         llama_cpp.llama_vocab_fim_mid(vocab))
        if min(pre, suf, mid) < 0:
            return None
        rep, sep = llama_cpp.llama_vocab_fim_rep(vocab), llama_cpp.llama_vocab_fim_sep(vocab)
        return cls(pre, suf, mid, rep if rep >= 0 else None, sep if sep >= 0 else None)


def infill_prompt(infill: Infill, fim: FimTokens | None, tokenize: Any, bos: int | None,
                  room: int) -> list[int]:
    """The prompt's tokens, at most `room` of them: past that, the other files go first (the
    earliest first), then the prefix's start and the suffix's end, 3:1 as llama.cpp cuts."""
    if fim is None:
        raise RequestError("this model has no fill-in-the-middle tokens in its vocabulary, so "
                           "it cannot complete between a prefix and a suffix; use a code model "
                           "that has them (Qwen2.5-Coder, CodeLlama, StarCoder, ...)",
                           param="suffix", code="fim_not_supported")
    prefix, suffix = tokenize(infill.prefix), tokenize(infill.suffix)
    budget = max(0, room - 3 - (bos is not None))
    if len(prefix) + len(suffix) > budget:
        n_suffix = min(len(suffix), budget // 4)
        n_prefix = min(len(prefix), budget - n_suffix)
        prefix, suffix = prefix[len(prefix) - n_prefix:], suffix[:n_suffix]
    extra = _files(infill.extra, fim, tokenize)
    spare = budget - len(prefix) - len(suffix)
    extra = extra[max(0, len(extra) - spare):] if spare > 0 else []
    head = [bos] if bos is not None else []
    return head + extra + [fim.pre, *prefix, fim.suf, *suffix, fim.mid]


def _files(files: tuple[tuple[str, str], ...], fim: FimTokens, tokenize: Any) -> list[int]:
    if not files:
        return []
    out = [fim.rep, *tokenize(REPO_NAME)] if fim.rep is not None else []
    for name, text in files:
        if fim.sep is not None:
            out += [fim.sep, *tokenize(name + "\n")]
        else:
            out += tokenize(SNIPPET)
        out += tokenize(text)
    if fim.sep is not None:
        out += [fim.sep, *tokenize("filename\n")]  # the file being edited: llama.cpp's name
    return out
