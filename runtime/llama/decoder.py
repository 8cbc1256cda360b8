"""The generation loop: continuous batching over parallel sequences, on llama.cpp's C API.

One thread owns the llama.cpp context. Each step it makes one batch holding the next token of
every sequence that is generating and chunks of the prompts still to evaluate (up to n_batch
tokens in all), calls `llama_decode` once, and samples each sequence's next token from its own
row of logits with its own sampler chain (its sampling settings, its grammar). So a second
client never waits for the first to finish, and a long prompt arriving is evaluated a chunk per
step, beside the others' tokens, instead of stalling them for its whole length.

The KV cache is unified: every sequence may use the whole context, and they share its cells.
A single user keeps the full context (per-sequence slices would give each 1/N of it); several
users share it: a request starts when the cache has room for its prompt and a little of its
answer beside what the running ones hold now (not what they might write: max_tokens is a
ceiling, rarely reached, and Ollama's -1 is the whole context), else it waits its turn. If the
cache does run out, idle sequences' caches go first, then a request still reading its prompt
goes back to the queue (nobody has seen a token of it), and last the sequence holding the most
cells ends with finish_reason "length", as it would at the end of a context of its own (as
llama-server's slots do). No running answer ever ends in an error for want of room. Each slot
keeps its tokens between requests; a request goes to the idle slot whose conversation it
continues (else the least recently used one), so interleaved conversations each keep their KV
and turn 8 only evaluates the new messages.

Why not `Llama.create_completion`: per token it re-detokenizes the whole answer, scans numpy
arrays and runs Python stop bookkeeping, and it decodes one sequence. Here each token costs one
sampler call and one piece lookup in a step shared by every sequence.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import logging
import queue
import re
import threading
import time
from collections.abc import Iterator, Set
from dataclasses import dataclass, field

from runtime.errors import (
    Abandoned,
    ContextOverflowError,
    LlamabundleError,
    RequestError,
)
from runtime.generation import Event, Finish, Sampling, TokenLogprob
from runtime.llama.bindings import llama_cpp
from runtime.llama.candidates import Candidates, LogprobReader, sample_checked
from runtime.llama.lazy import LazyGrammar
from runtime.llama.tool_grammar import ToolGrammar
from runtime.stops import StopScanner

log = logging.getLogger(__name__)

LLAMA_DEFAULT_SEED = 0xFFFFFFFF  # llama.cpp: pick a random seed


class DecodeError(LlamabundleError):
    pass


@dataclass(eq=False)
class _Sequence:
    """One request's generation, from the caller's thread to the decode thread and back."""

    prompt: list[int]
    chain: llama_cpp.llama_sampler_p
    budget: int  # tokens it may generate
    stops: tuple[str, ...]
    out: queue.SimpleQueue[Event | BaseException] = field(default_factory=queue.SimpleQueue)
    constraint: llama_cpp.llama_sampler_p | None = None  # its grammar, checked on each pick
    lazy: LazyGrammar | None = None  # a tool grammar waiting for its trigger (then constraint)
    visible: Set[int] = frozenset()  # control tokens whose text is shown (tool markers)
    reader: LogprobReader | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)  # the request's
    closed: bool = False  # its reader stopped reading
    # the decode thread's own
    slot: _Slot | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    next_token: int | None = None  # sampled, to be decoded in the next step
    reused: int = 0
    produced: int = 0
    admitted: int = 0
    prefilled: int = 0
    utf8: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    scanner: StopScanner | None = None
    # words_first, until the answer holds a word: what it said so far (_pick_worded)
    wordless: bool = False
    said: str = ""


@dataclass(eq=False)
class _Slot:
    """One KV-cache sequence id and the tokens it holds."""

    id: int
    cached: list[int] = field(default_factory=list)
    last_used: float = 0.0
    busy: bool = False


# How long a step that only reads new prompts waits for a request still being prepared (its
# chat template rendered, its prompt tokenized on another thread), so that prompts sent
# together are read in one llama_decode: otherwise the second waits out the first's.
GATHER_S = 0.025
# Cells a request needs beyond its prompt to be started beside others: room for its first
# tokens. More is found as it goes (or it is stopped, see _recover).
RESERVE = 64
# What an answer holding no word yet is (words_first): white space, punctuation, numbers and
# citations. Told to cite its sources, the 0.5B model sometimes answered "[2]" and ended there
# (issue #24: two of the third probe's 24 answers; bench.knowledge_eval's "Data Classes").
_WORDLESS = re.compile(r"(?:\[\d+\]|[\W\d_])*")


class Decoder:
    """Owns one llama.cpp context and what its KV cache holds, and the thread that decodes."""

    def __init__(self, ctx: llama_cpp.llama_context_p, vocab: llama_cpp.llama_vocab_p,
                 n_ctx: int, n_batch: int, n_seq: int = 1):
        self.ctx = ctx
        self.vocab = vocab
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.memory = llama_cpp.llama_get_memory(ctx)
        model = llama_cpp.llama_get_model(ctx)
        # A recurrent model's state is its whole sequence's: no prefix of it can be shared.
        self._prefixes_shared = not (llama_cpp.llama_model_is_recurrent(model)
                                     or llama_cpp.llama_model_is_hybrid(model))
        self.slots = [_Slot(i) for i in range(n_seq)]
        self._inbox: queue.SimpleQueue[_Sequence] = queue.SimpleQueue()
        self._preparing = 0  # requests between arriving() and generate()
        self._preparing_lock = threading.Lock()
        self._waiting: list[_Sequence] = []  # arrived, no free slot yet
        self._active: list[_Sequence] = []
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._prefill_cap = n_batch  # prompt tokens per step: halved while the cache is too
        # fragmented for a chunk, doubled back after each step that fits
        self._piece_buf = ctypes.create_string_buffer(256)
        self._outbox: list[tuple[_Sequence, str]] = []  # this step's pieces (_flush)
        self._candidates: Candidates | None = None  # made on first use: 1.8 MB for Qwen2.5
        self._ends_seen: set[int] = set()  # end and citation tokens met (_pick_worded)
        self._citations_seen: set[int] = set()
        # While a step reads prompt chunks (seconds on a slow CPU), llama.cpp asks between graph
        # nodes whether to stop: yes once every sequence in the step is abandoned, so Ctrl-C
        # or a client leaving stops a long prompt now, not at the end of its chunk. Only for
        # such steps: a call per node would cost a token step a few percent.
        self._stepping: list[_Sequence] = []
        self._abort = llama_cpp.ggml_abort_callback(lambda _: self._abandoned())
        self._no_abort = llama_cpp.ggml_abort_callback()  # NULL
        threading.Thread(target=self._loop, name="decode", daemon=True).start()

    @property
    def cached_tokens(self) -> int:
        """Cells of the KV cache in use (read from any thread). A prefix two sequences hold is
        counted once: they share its cells (_start), unless both read it in the same step."""
        held, counted = 0, list[list[int]]()
        for tokens in sorted((list(slot.cached) for slot in self.slots), key=len, reverse=True):
            held += len(tokens) - max((_common(c, tokens) for c in counted), default=0)
            counted.append(tokens)
        return held

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around the preparation of a request's prompt (any thread), before generate(): a
        step that would read only new prompts waits for it (GATHER_S at most)."""
        with self._preparing_lock:
            self._preparing += 1
        try:
            yield
        finally:
            with self._preparing_lock:
                self._preparing -= 1

    def generate(self, prompt: list[int], sampling: Sampling, max_tokens: int,
                 stops: tuple[str, ...], grammar: str | ToolGrammar | None = None,
                 visible: Set[int] = frozenset(), logprobs: int | None = None,
                 cancel: threading.Event | None = None,
                 words_first: bool = False) -> Iterator[Event]:
        """Text pieces as they are decoded, then one Finish; closing the iterator stops it
        within a step. Any thread may call it.

        max_tokens: 0 evaluates the prompt and generates nothing (it warms the cache, as
        llama.cpp's n_predict 0 does); -1 generates until the context is full. A prompt that
        cannot fit raises here, before anything is generated. grammar: GBNF text, or a tool
        grammar (lazy ones wait for their trigger). visible: control tokens whose text is
        shown (tool-call markers such as [TOOL_CALLS], which the parser must see). logprobs:
        each token's log-probability, with that many alternatives, in the Finish. cancel: set
        from any thread, the sequence ends within a step (waiting, reading its prompt or
        generating) and the iterator raises Abandoned. words_first: the end of text is
        refused until the answer holds a word (a letter or a CJK character outside citations
        such as "[2]"; see _WORDLESS), and so is a second citation (_pick_worded); not under a
        grammar, which decides itself what may come."""
        if cancel is not None and cancel.is_set():
            raise Abandoned("the request was abandoned")
        if not prompt:
            raise RequestError("the prompt is empty", param="prompt")
        if len(prompt) >= self.n_ctx:
            raise ContextOverflowError(
                f"the prompt has {len(prompt)} tokens but the context holds {self.n_ctx}; "
                "shorten the conversation or start the artifact with a larger -c")
        budget = self.n_ctx - len(prompt)
        if max_tokens >= 0:
            budget = min(budget, max_tokens)
        lazy = LazyGrammar(self.vocab, grammar) \
            if isinstance(grammar, ToolGrammar) and grammar.lazy else None
        constraint = self._constraint(grammar) if grammar and lazy is None else None
        sequence = _Sequence(list(prompt), self._sampler(sampling, prompt), budget, stops,
                             constraint=constraint, lazy=lazy, visible=visible,
                             wordless=words_first and constraint is None and lazy is None)
        if cancel is not None:
            sequence.cancel = cancel
        if logprobs is not None:
            sequence.reader = LogprobReader(logprobs, self._piece)
        self._inbox.put(sequence)
        return self._events(sequence)

    @staticmethod
    def _events(sequence: _Sequence) -> Iterator[Event]:
        try:
            while True:
                item = sequence.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finish):
                    return
        finally:
            sequence.closed = True  # after a Finish, a no-op: the sequence is gone

    # ---- the decode thread

    def _loop(self) -> None:
        while True:
            try:
                self._step()
            except Exception as e:  # never let the thread die: every waiter would hang
                log.exception("decode step failed")  # the why is for the log, not the client
                self._fail_all(e if isinstance(e, LlamabundleError)
                               else DecodeError("generation failed; the server's log says why"))

    def _step(self) -> None:
        if not self._active and not self._waiting:
            self._waiting.append(self._inbox.get())  # idle: sleep until a request comes
        while True:
            try:
                self._waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        if self._preparing and not any(s.next_token is not None for s in self._active):
            self._gather()
        for sequence in self._waiting + self._active:
            if sequence.closed or sequence.cancel.is_set():
                self._end(sequence, None, Abandoned("the request was abandoned"))
        while self._waiting and self._fits(self._waiting[0]) and \
                (slot := self._free_slot(self._waiting[0])) is not None:
            self._start(self._waiting.pop(0), slot)
        if self._active:
            self._decode_step()

    def _gather(self) -> None:
        """Waits (GATHER_S at most) for the requests being prepared; only when nothing is
        generating, so no stream ever pauses for it."""
        deadline = time.monotonic() + GATHER_S
        while self._preparing and (left := deadline - time.monotonic()) > 0:
            try:
                self._waiting.append(self._inbox.get(timeout=left))
            except queue.Empty:
                return

    def _fits(self, sequence: _Sequence) -> bool:
        """Whether the shared cache has room now for this prompt and the next few tokens of
        every answer (RESERVE each, or what is left of its budget); if not, it waits (alone
        it always fits). Idle slots' caches do not count: they are given up when room is
        needed."""
        if not self._active:
            return True
        held = sum(len(s.slot.cached) + len(s.pending) + min(RESERVE, s.budget - s.produced)
                   for s in self._active if s.slot is not None)
        return held + len(sequence.prompt) + min(RESERVE, sequence.budget) <= self.n_ctx

    def _free_slot(self, sequence: _Sequence) -> _Slot | None:
        """The idle slot whose conversation the prompt continues (it shares at least half of
        what the slot holds: the longest such prefix wins), else the least recently used.
        Half, as llama-server's slot similarity: a new chat that merely shares a system prompt
        or a template's first tokens must not take the slot of a long conversation."""
        idle = [slot for slot in self.slots if not slot.busy]
        if not idle:
            return None
        shared = {slot.id: _common(slot.cached, sequence.prompt) for slot in idle}
        continued = [slot for slot in idle if slot.cached and
                     shared[slot.id] * 2 >= len(slot.cached)]
        if continued:
            return max(continued, key=lambda slot: shared[slot.id])
        return min(idle, key=lambda slot: slot.last_used)

    def _start(self, sequence: _Sequence, slot: _Slot) -> None:
        keep = min(_common(slot.cached, sequence.prompt), len(sequence.prompt) - 1)
        donor, shared = self._donor(slot, sequence.prompt)
        if donor is not None and shared > keep:
            # Another slot holds more of this prompt (a new chat with the system prompt, the
            # tools or a knowledge bundle's instruction of the last one): its cells are shared
            # into this slot's sequence. The cache is unified, so llama.cpp adds this sequence
            # to those cells and copies nothing.
            llama_cpp.llama_memory_seq_rm(self.memory, slot.id, -1, -1)
            llama_cpp.llama_memory_seq_cp(self.memory, donor.id, slot.id, 0, shared)
            slot.cached[:] = donor.cached[:shared]
            keep = shared
        elif not llama_cpp.llama_memory_seq_rm(self.memory, slot.id, keep, -1):
            keep = 0  # this cache cannot drop part of a sequence: drop all of it
            llama_cpp.llama_memory_seq_rm(self.memory, slot.id, -1, -1)
        del slot.cached[keep:]
        slot.busy = True
        sequence.slot = slot
        sequence.reused = keep
        sequence.pending = sequence.prompt[keep:]
        sequence.scanner = StopScanner(sequence.stops)
        sequence.admitted = time.perf_counter_ns()
        self._active.append(sequence)

    def _donor(self, slot: _Slot, prompt: list[int]) -> tuple[_Slot | None, int]:
        """The other slot (busy or idle) sharing the longest prefix with `prompt`, and that
        prefix's length (never the whole prompt: its last token is decoded for its logits)."""
        best: tuple[_Slot | None, int] = (None, 0)
        for other in self.slots if self._prefixes_shared else ():
            if other is not slot:
                shared = min(_common(other.cached, prompt), len(prompt) - 1)
                if shared > best[1]:
                    best = (other, shared)
        return best

    def _decode_step(self) -> None:
        """One llama_decode over every active sequence; each samples from its own row."""
        rows: list[tuple[_Sequence, int]] = []  # sequences that sample, with their row
        added: list[tuple[_Slot, list[int]]] = []
        batch, n = self._batch, 0

        def add(slot: _Slot, tokens: list[int], logits_last: bool) -> None:
            nonlocal n
            start = len(slot.cached)
            for j, token in enumerate(tokens):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, start + j, 1
                batch.seq_id[n][0] = slot.id
                batch.logits[n] = logits_last and j == len(tokens) - 1
                n += 1
            added.append((slot, tokens))

        for sequence in self._active:  # first every generating sequence's next token
            if sequence.next_token is not None:
                assert sequence.slot is not None
                add(sequence.slot, [sequence.next_token], True)
                rows.append((sequence, n - 1))
        limit = min(self.n_batch, n + self._prefill_cap)
        for sequence in self._active:  # then prompt chunks, oldest request first
            if sequence.pending and n < limit:
                assert sequence.slot is not None
                chunk = sequence.pending[:limit - n]
                del sequence.pending[:len(chunk)]
                add(sequence.slot, chunk, not sequence.pending)
                if not sequence.pending:
                    rows.append((sequence, n - 1))
        batch.n_tokens = n
        reading = any(len(tokens) > 1 for _, tokens in added)
        if reading:
            self._stepping = list(self._active)
            llama_cpp.llama_set_abort_callback(self.ctx, self._abort, None)
        try:
            code = llama_cpp.llama_decode(self.ctx, batch)
        finally:
            if reading:
                llama_cpp.llama_set_abort_callback(self.ctx, self._no_abort, None)
                self._stepping = []
        if code != 0:
            self._recover(code, added)
            return
        for slot, tokens in added:
            slot.cached.extend(tokens)
        self._prefill_cap = min(self.n_batch, self._prefill_cap * 2)
        now = time.perf_counter_ns()
        try:
            for sequence, row in rows:
                if sequence.next_token is None:
                    sequence.prefilled = now
                self._sample(sequence, row)
        finally:
            self._flush()

    def _abandoned(self) -> bool:
        return all(s.closed or s.cancel.is_set() for s in self._stepping)

    def _sample(self, sequence: _Sequence, row: int) -> None:
        sequence.next_token = None
        if sequence.produced >= sequence.budget:  # max_tokens 0: the prompt only
            self._end(sequence, "length")
            return
        if sequence.wordless:
            token = self._pick_worded(sequence, row)
        elif sequence.constraint is None:
            token = llama_cpp.llama_sampler_sample(sequence.chain, self.ctx, row)
        else:
            token = sample_checked(sequence.chain, sequence.constraint, self.candidates(), row)
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            self._end(sequence, "stop")
            return
        if sequence.lazy is not None:
            sequence.lazy.accept(token, self._piece(token, True))
            if sequence.lazy.sampler is not None:  # triggered: from now on it constrains
                sequence.constraint, sequence.lazy = sequence.lazy.sampler, None
        sequence.produced += 1
        if sequence.reader is not None:
            sequence.logprobs.append(sequence.reader.read(self.candidates(), row, token))
        assert sequence.scanner is not None
        piece = self._piece(token, token in sequence.visible)
        text, hit = sequence.scanner.feed(sequence.utf8.decode(piece))
        if text:
            self._outbox.append((sequence, text))
            if sequence.wordless:
                sequence.said += text
                sequence.wordless = bool(_WORDLESS.fullmatch(sequence.said))
        if hit:
            self._end(sequence, "stop")
        elif sequence.produced >= sequence.budget:
            self._end(sequence, "length")  # the last token's KV entry would never be used
        else:
            sequence.next_token = token

    def _pick_worded(self, sequence: _Sequence, row: int) -> int:
        """The chain's pick with the end of text barred, and once the answer has cited a
        source, another citation barred too (words_first): barred from ending after "[2]",
        the 0.5B model wrote "[3] [4] … [28]" to its last token. A barred pick is taken out
        and the chain picks again: it is one of a few tokens, where finding every end and
        bracket token of a vocabulary first took 0.7 s."""
        candidates = self.candidates()
        cited = "]" in sequence.said
        while True:
            array_ = candidates.fill(row)
            for token in self._ends_seen | (self._citations_seen if cited else set()):
                candidates.data[token].logit = float("-inf")
            llama_cpp.llama_sampler_apply(sequence.chain, ctypes.byref(array_))
            token = int(array_.data[array_.selected].id)
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                self._ends_seen.add(token)
            elif cited and self._piece(token).lstrip().startswith(b"["):
                self._citations_seen.add(token)
            else:
                llama_cpp.llama_sampler_accept(sequence.chain, token)
                return token

    def _flush(self) -> None:
        """Hands the step's pieces to their readers, once every sequence is sampled. Put one
        by one as each was sampled, they woke each reader's thread while the decode thread
        still sampled the others: those threads took the GIL and the free core from the
        sampling, which every sequence waits for (issue #25: at 4 clients on the demo model
        the step's sampling took 1.65 ms instead of 1.31, and its Python waited 0.41 ms for
        the GIL instead of 0.04-0.1; bench/results/per-token-split-25.md)."""
        outbox, self._outbox = self._outbox, []
        for sequence, text in outbox:
            sequence.out.put(text)

    def _end(self, sequence: _Sequence, reason: str | None,
             error: BaseException | None = None) -> None:
        """Finishes a sequence (reason None: it was cancelled) and frees its slot."""
        self._flush()  # its text before its end
        if sequence in self._waiting:
            self._waiting.remove(sequence)
        if sequence in self._active:
            self._active.remove(sequence)
        if sequence.slot is not None:
            sequence.slot.busy = False
            sequence.slot.last_used = time.monotonic()
        llama_cpp.llama_sampler_free(sequence.chain)
        if sequence.constraint is not None:
            llama_cpp.llama_sampler_free(sequence.constraint)
        if sequence.reader is not None:
            sequence.reader.close()
        if error is not None:
            sequence.out.put(error)
        elif reason is not None:
            assert sequence.scanner is not None
            tail = sequence.scanner.flush() + sequence.utf8.decode(b"", final=True)
            if tail:
                sequence.out.put(tail)
            now = time.perf_counter_ns()
            prefilled = sequence.prefilled or now
            sequence.out.put(Finish(reason, len(sequence.prompt), sequence.produced,
                                    sequence.reused, prefilled - sequence.admitted,
                                    now - prefilled, None if sequence.reader is None
                                    else tuple(sequence.logprobs),
                                    stop_sequence=sequence.scanner.matched))

    def _recover(self, code: int, added: list[tuple[_Slot, list[int]]]) -> None:
        """A failed decode: the cache may hold part of the batch, so those sequences' cells
        beyond what they had are dropped. No room left (code 1): idle slots' caches go first,
        then smaller prompt chunks, then the newest request is refused; the step is then
        retried as the loop goes on."""
        for slot, _ in added:
            llama_cpp.llama_memory_seq_rm(self.memory, slot.id, len(slot.cached), -1)
        for sequence in self._active:  # what was taken off for this step goes back
            for slot, tokens in added:
                if sequence.slot is slot and sequence.next_token is None:
                    sequence.pending[:0] = tokens
        if code == 2:  # aborted (_abandoned): the next step ends every sequence in it
            return
        if code == 1:
            log.info("no room in the KV cache for a batch of %d tokens (%d of %d cells held "
                     "by %d slots)", sum(len(t) for _, t in added), self.cached_tokens,
                     self.n_ctx, sum(1 for slot in self.slots if slot.cached))
            idle = [slot for slot in self.slots if not slot.busy and slot.cached]
            if idle:
                for slot in idle:
                    llama_cpp.llama_memory_seq_rm(self.memory, slot.id, -1, -1)
                    slot.cached.clear()
                return
            if any(len(tokens) > 1 for _, tokens in added) and self._prefill_cap > 1:
                # Free cells, but scattered: sequences that grow a token at a time leave
                # holes, and a prompt chunk needs a run of cells. Smaller chunks fit them.
                self._prefill_cap = max(1, self._prefill_cap // 2)
                return
            if len(self._active) > 1:
                self._make_room()
                return
        for sequence in list(self._active):
            self._drop_cache(sequence)
            self._end(sequence, None, DecodeError(
                f"llama_decode failed ({code}); the request was dropped"))

    def _make_room(self) -> None:
        """The cache is full with running sequences: the newest one still reading its prompt
        goes back to the front of the queue (nothing of it was seen; it starts again when
        there is room), else the one holding the most cells ends with "length"."""
        reading = [s for s in self._active if s.produced == 0 and s.next_token is None]
        if reading:
            newest = reading[-1]
            log.info("the KV cache is full: a request reading its prompt waits again")
            self._drop_cache(newest)
            self._active.remove(newest)
            assert newest.slot is not None
            newest.slot.busy = False
            newest.slot = None
            newest.pending = []
            self._waiting.insert(0, newest)
            return
        longest = max(self._active, key=lambda s: len(s.slot.cached) if s.slot else 0)
        log.info("the KV cache is full: an answer of %d tokens ends (length)", longest.produced)
        self._drop_cache(longest)
        self._end(longest, "length")

    def _drop_cache(self, sequence: _Sequence) -> None:
        if sequence.slot is not None:
            llama_cpp.llama_memory_seq_rm(self.memory, sequence.slot.id, -1, -1)
            sequence.slot.cached.clear()

    def _fail_all(self, error: LlamabundleError) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)
        for slot in self.slots:
            slot.cached.clear()
        for sequence in list(self._active) + list(self._waiting):
            self._end(sequence, None, error)

    def candidates(self) -> Candidates:
        """The decode thread's candidate array (grammar checks and logprobs)."""
        if self._candidates is None:
            self._candidates = Candidates(self.ctx, llama_cpp.llama_vocab_n_tokens(self.vocab))
        return self._candidates

    def _piece(self, token: int, special: bool = False) -> bytes:
        n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece_buf,
                                           len(self._piece_buf), 0, special)
        if n < 0:
            self._piece_buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece_buf,
                                               len(self._piece_buf), 0, special)
        return self._piece_buf.raw[:n]

    def _sampler(self, s: Sampling, history: list[int]) -> llama_cpp.llama_sampler_p:
        # The order of llama.cpp's own default chain: penalties, top-k, top-p, min-p, temp, dist.
        chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params())

        def add(sampler: llama_cpp.llama_sampler_p) -> None:
            llama_cpp.llama_sampler_chain_add(chain, sampler)

        if s.repeat_penalty != 1.0 or s.frequency_penalty or s.presence_penalty:
            n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
            add(llama_cpp.llama_sampler_init_penalties(n_vocab, s.repeat_last_n,
                                                       s.repeat_penalty, s.frequency_penalty,
                                                       s.presence_penalty))
            for token in history[-s.repeat_last_n:]:
                llama_cpp.llama_sampler_accept(chain, token)
        if s.temperature <= 0:
            add(llama_cpp.llama_sampler_init_greedy())
        else:
            if s.top_k > 0:
                add(llama_cpp.llama_sampler_init_top_k(s.top_k))
            add(llama_cpp.llama_sampler_init_top_p(s.top_p, 1))
            add(llama_cpp.llama_sampler_init_min_p(s.min_p, 1))
            add(llama_cpp.llama_sampler_init_temp(s.temperature))
            seed = LLAMA_DEFAULT_SEED if s.seed is None else s.seed & 0xFFFFFFFF
            add(llama_cpp.llama_sampler_init_dist(seed))
        return chain

    def _constraint(self, grammar: str | ToolGrammar) -> llama_cpp.llama_sampler_p:
        """The grammar's sampler, kept out of the chain: sample_checked consults it (it never
        sees the prompt, only the answer)."""
        constraint = self._grammar(grammar)
        if not constraint:
            if isinstance(grammar, ToolGrammar):
                raise RequestError("tools: the tools' schemas could not be compiled",
                                   param="tools")
            raise RequestError("response_format: the schema could not be compiled",
                               param="response_format")
        return constraint

    def _grammar(self, grammar: str | ToolGrammar) -> llama_cpp.llama_sampler_p:
        text = grammar if isinstance(grammar, str) else grammar.gbnf  # lazy ones: lazy.py
        return llama_cpp.llama_sampler_init_grammar(self.vocab, text.encode(), b"root")


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
