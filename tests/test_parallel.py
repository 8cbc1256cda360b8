"""Several clients at once: sequences decoded together, each keeping its own KV prefix."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import httpx
import pytest

pytestmark = pytest.mark.slow


def stream_chat(url: str, messages: list[dict], max_tokens: int,
                marks: dict[str, float]) -> dict:
    """A streamed chat; marks get the times of its first and last content piece."""
    text, usage = "", None
    with httpx.stream("POST", url + "/v1/chat/completions", timeout=120, json={
            "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                marks.setdefault("first", time.monotonic())
                marks["last"] = time.monotonic()
                text += chunk["choices"][0]["delta"]["content"]
    return {"text": text, "usage": usage}


def chat(url: str, messages: list[dict], max_tokens: int = 8) -> dict:
    r = httpx.post(url + "/v1/chat/completions", timeout=120, json={
        "messages": messages, "max_tokens": max_tokens, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()


def long_then_short(url: str, long_tokens: int) -> tuple[dict, dict, dict]:
    """A long answer streams; once its first token is in, a short one (5 tokens) is asked.
    The two streams' marks (first and last token times) and the short answer."""
    long_marks: dict[str, float] = {}
    short_marks: dict[str, float] = {}
    first = threading.Thread(target=stream_chat, args=(
        url, [{"role": "user", "content": "go on and on"}], long_tokens, long_marks))
    first.start()
    while "first" not in long_marks:
        time.sleep(0.01)
    result = stream_chat(url, [{"role": "user", "content": "hi"}], 5, short_marks)
    first.join()
    return long_marks, short_marks, result


def test_a_second_client_gets_tokens_while_the_first_is_still_generating(demo_artifact, serve):
    # The demo model: the tiny one decodes ~2,000 tokens/s and ends its answers with an EOS
    # after ~100 tokens, over before a second request is even read.
    server = serve(demo_artifact, "--parallel", "2")
    long_marks, short_marks, result = long_then_short(server.url, 250)
    assert result["usage"]["completion_tokens"] == 5
    # the short answer came and went while the long one was still being written
    assert short_marks["last"] < long_marks["last"]


def test_with_one_sequence_requests_take_turns(tiny_artifact, serve):
    server = serve(tiny_artifact, "--parallel", "1")
    long_marks, short_marks, _ = long_then_short(server.url, 200)
    assert short_marks["first"] > long_marks["last"]


def test_interleaved_conversations_each_keep_their_prefix(tiny_artifact, serve):
    server = serve(tiny_artifact, "--parallel", "2")
    # both conversations fit the tiny model's 512-token context together
    talks = {name: [{"role": "system", "content": f"You are {name}."},
                    {"role": "user", "content": f"hello {name}"}] for name in ("ann", "bob")}
    last_prompt = {name: 0 for name in talks}
    for _turn in range(2):
        for name, messages in talks.items():  # ann, bob, ann, bob...: each evicts nothing
            usage = (answer := chat(server.url, messages))["usage"]
            # all of this conversation's previous prompt came from the cache
            assert usage["prompt_tokens_details"]["cached_tokens"] >= last_prompt[name] - 1
            last_prompt[name] = usage["prompt_tokens"]
            messages += [{"role": "assistant",
                          "content": answer["choices"][0]["message"]["content"]},
                         {"role": "user", "content": f"and then, {name}?"}]


def test_a_new_chat_reads_only_what_follows_a_system_prompt_another_slot_holds(tiny_artifact,
                                                                              serve):
    # A knowledge bundle's instruction, a client's tools or system prompt: the same first
    # tokens in every new chat. The first chat's own part is long, so the second shares less
    # than half of it and takes another slot (the least recently used: it must not take over
    # a long conversation), and shares the cells of the slot that holds the system prompt.
    system = {"role": "system", "content": "You answer questions about the orchard. " * 2}
    first = [system, {"role": "user", "content": "how many apple trees are there? " * 6}]
    second = [system, {"role": "user", "content": "and the pears?"}]
    shared = serve(tiny_artifact, "--parallel", "4")
    n_system = len(httpx.post(shared.url + "/tokenize", json={
        "content": system["content"]}).json()["tokens"])
    asked = chat(shared.url, first)
    assert asked["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    reused = chat(shared.url, second, max_tokens=12)
    assert reused["usage"]["prompt_tokens_details"]["cached_tokens"] >= n_system
    # The cells are shared, and the KV cache's use counts them once.
    metrics = httpx.get(shared.url + "/metrics").text
    used = float(next(line.split()[1] for line in metrics.splitlines()
                      if line.startswith("llamabundle_kv_cache_tokens ")))
    both = sum(a["usage"]["prompt_tokens"] + a["usage"]["completion_tokens"]
               for a in (asked, reused))
    assert used <= both - n_system
    # What it answers is what it answers when it reads the whole prompt itself.
    alone = chat(serve(tiny_artifact, "--parallel", "4").url, second, max_tokens=12)
    assert alone["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert reused["choices"][0]["message"]["content"] == alone["choices"][0]["message"]["content"]


def test_requests_that_could_overflow_the_shared_context_run_together(tiny_artifact, serve):
    """Each may write 200 tokens, both together cannot: both start (admitted on what they
    need now, #23) and if the cache runs out one answer ends with "length"; nobody gets an
    error."""
    server = serve(tiny_artifact, "--parallel", "2", "-c", "256")
    prompt = "apple pear " * 4
    n_prompt = len(httpx.post(server.url + "/tokenize", json={"content": prompt}).json()["tokens"])
    assert n_prompt < 56  # each alone fits (prompt + 200 < 256); both together cannot
    results: list[tuple[int, float, float]] = []

    def long_one() -> None:
        started = time.monotonic()
        r = httpx.post(server.url + "/completion", timeout=120, json={
            "prompt": prompt, "n_predict": 200, "temperature": 0})
        results.append((r.status_code, started, time.monotonic()))

    threads = [threading.Thread(target=long_one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [code for code, _, _ in results] == [200, 200]  # nobody refused
    assert max(started for _, started, _ in results) < min(ended for _, _, ended in results)
    assert chat(server.url, [{"role": "user", "content": "still there?"}])["choices"]


def test_llama_cpp_keeps_its_compute_threads_between_steps(tiny_artifact, serve):
    # A pool attached to the context, as llama-server's: without it every llama_decode starts
    # its worker threads and joins them again (about one new thread per token here).
    server = serve(tiny_artifact, "-t", "2")
    snapshots: list[set[int]] = []
    with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "go on and on"}], "max_tokens": 150,
            "temperature": 0, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                snapshots.append(threads_of(server.proc.pid))
    assert len(snapshots) > 50
    assert set().union(*snapshots[1:]) == snapshots[1]  # no thread came or went


def threads_of(pid: int) -> set[int]:
    """The thread ids of a process and its children (the onefile launcher's child runs)."""
    found, todo = set(), [pid]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            tasks = {int(t) for t in os.listdir(f"/proc/{pid}/task")}
            found |= tasks
            for task in tasks:  # children are listed under the thread that started them
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(child) for child in f.read().split()]
    return found


@pytest.mark.parametrize("prepared_for", [0.005, 1.0])
def test_prompts_sent_together_are_read_in_one_step(tiny_gguf, monkeypatch, prepared_for):
    """A request still being prepared (its template rendered on another thread) when the
    decoder is about to read another prompt joins that step if it comes within GATHER_S;
    one that takes longer does not hold the first back."""
    from runtime.generation import Sampling
    from runtime.llama import cpu
    from runtime.llama import decoder as decoder_module
    from runtime.llama.bindings import llama_cpp
    from runtime.llama.model import Tokenizer, load_model, new_context

    assert prepared_for < decoder_module.GATHER_S or prepared_for > 20 * decoder_module.GATHER_S
    cpu.load()
    llama_cpp.llama_backend_init()
    model = load_model(str(tiny_gguf), 0)
    tokenizer = Tokenizer(model)
    dec = decoder_module.Decoder(new_context(model, 256, 1, n_seq=2), tokenizer.vocab, 256, 64,
                                 n_seq=2)
    steps: list[int] = []
    real_decode = llama_cpp.llama_decode

    def decode(ctx, batch):  # noqa: ANN001, ANN202
        steps.append(batch.n_tokens)
        return real_decode(ctx, batch)

    monkeypatch.setattr(llama_cpp, "llama_decode", decode)
    first, second = tokenizer.tokenize("the first prompt"), tokenizer.tokenize("a second one")
    preparing = threading.Event()
    answers: dict[str, list] = {}

    def other() -> None:
        with dec.arriving():
            preparing.set()
            time.sleep(prepared_for)
        answers["second"] = list(dec.generate(second, Sampling(temperature=0), 2, ()))

    thread = threading.Thread(target=other)
    thread.start()
    preparing.wait()
    answers["first"] = list(dec.generate(first, Sampling(temperature=0), 2, ()))
    thread.join()
    assert answers["first"] and answers["second"]
    if prepared_for < decoder_module.GATHER_S:
        assert steps[0] == len(first) + len(second)
    else:
        assert steps[0] == len(first)
