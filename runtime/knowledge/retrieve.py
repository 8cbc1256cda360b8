"""A chat turn in a knowledge bundle: retrieve passages for the question and build the prompt
around them within the context budget.

The budget is counted with the chat model's own tokenizer on the whole rendered chat (the
engine hands in `count`), so what is sent is exactly what was measured. What may give way, in
this order: the lowest-ranked passages, then the oldest messages. Never the system prompt, the
question or the last exchange before it: if those alone do not fit, the decoder says the prompt
is too long, as it does without knowledge. What was left out is logged and reported in
`Finish.knowledge` (the dialects put it in `usage`).

The passages go into the last user message, not the system prompt: they change every turn, and
everything before them stays the same, so the KV cache of the earlier turns is reused. The
instruction to answer from them and cite them follows the system prompt (the same text every
turn, so it is reused too), written in the question's language (English or Chinese), which a
small model follows far better than "answer in the user's language". Each passage is quoted
as runtime/knowledge/excerpt.py cuts it for the question (the sentences that match it, with
their neighbours); the sources keep the whole passages.

Standard library and runtime types only: no llama.cpp here (the tests drive it with fakes).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.generation import (
    ChatMessage,
    Event,
    Finish,
    GenerationRequest,
    KnowledgeUsage,
    Sources,
)
from runtime.knowledge.attribute import attributed, without_label
from runtime.knowledge.excerpt import excerpt, question_terms, term_share
from runtime.knowledge.passage import Hit, Knowledge
from runtime.knowledge.terms import script

log = logging.getLogger(__name__)

TOP_K = 4  # passages retrieved per turn at most: what peers use (3-4); more confuses a small model
# A passage whose relevance is below this share of the best one's is left out: a small model
# cites and copies from whatever it is shown, and a far weaker passage is mostly a distractor.
# On the bilingual test set the passage that answers was the most relevant one for 43 of 44
# covered questions; at 0.5 the prompt holds 1.6 passages on average instead of 3.5, and a
# passage of another document 0.3 times instead of 1.1. Raised to 0.7 on the tune split of
# bench.knowledge_eval (issue #24): 2.0 passages a question instead of 2.7, the right document
# still among them for 23 of 23, and with the 0.5B model the fact in 11 answers instead of 10,
# the right document cited as often (22).
CLOSE_ENOUGH = 0.7
# A passage holding far fewer of the question's terms (excerpt.term_share: words, CJK bigrams,
# numbers) than the one of the same script holding most is left out too, when that one holds
# at least WORDS_DECIDE of them. The 0.5B model copied its answer from a project's introduction
# or feature list shown beside the passage that answers: on bench.knowledge_eval's tune split
# this drops 13 passages of 45 (0.8 would drop one holding an answer) and the fact is in 16
# answers of 23 instead of 13. Below WORDS_DECIDE the words say too little and the vectors alone
# decide, as they do for every passage in the other script: an English question's Chinese
# passage shares no word with it (judged by words, an English passage holding "working" beat
# the Chinese one answering "What are the core working hours?" in bench.knowledge's set).
WORDS_CLOSE = 0.7
WORDS_DECIDE = 0.3
RECENT = 2  # messages before the question never dropped: the last exchange it follows up
FOLLOW_UP_CONTEXT = 200  # characters of the previous question added to a follow-up's query
FOLLOW_UP_ADDS = 2  # passages a follow-up's search with the previous question may add

Counter = Callable[[Sequence[ChatMessage]], int]  # the prompt's tokens for these messages

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_ANAPHORA_EN = re.compile(r"\b(it|its|that|this|these|those|they|them|their|there|he|she|"
                          r"one|ones|same|also|more|else|why|how so)\b", re.IGNORECASE)
_ANAPHORA_ZH = re.compile(r"[它这那其该此]|他们|她们|上面|上述|还有|呢")


@dataclass(frozen=True)
class Grounding:
    """The messages to send, the passages they hold (numbered in this order) and the counts."""

    messages: tuple[ChatMessage, ...]
    hits: tuple[Hit, ...]
    usage: KnowledgeUsage


# ---- the query


def find(knowledge: Knowledge, query: str, top_k: int = TOP_K) -> list[Hit]:
    """The one retrieval path: what POST /knowledge/search returns and what a chat turn puts
    in its prompt for the same question (issue #24: the two disagreed). The index's best
    `top_k`, less those far less relevant than the best one (close_enough) or holding far
    fewer of its terms (close_in_words)."""
    return close_in_words(close_enough(knowledge.search(query, top_k)), query)


def sources_for(knowledge: Knowledge, messages: Sequence[ChatMessage]) -> list[Hit]:
    """A chat turn's passages: find() for the question itself (exactly what /knowledge/search
    gives for it), then, when it reads as a follow-up, up to FOLLOW_UP_ADDS more found with
    the previous question in front (close_enough, not close_in_words). The question's own
    passages come first and are never replaced: a question that merely says "it" or "this" is
    still searched as asked."""
    users = [m.content.strip() for m in messages if m.role == "user"]
    question = users[-1] if users else ""
    hits = find(knowledge, question) if question else []
    query = query_for(messages)
    if query != question:
        # By the vectors alone: the two questions' terms together are no one passage's.
        seen = {_key(h) for h in hits}
        hits += [h for h in close_enough(knowledge.search(query, TOP_K))
                 if _key(h) not in seen][:FOLLOW_UP_ADDS]
    return hits


def _key(hit: Hit) -> tuple[str, str, str]:
    p = hit.passage
    return p.document, p.location, p.text


def query_for(messages: Sequence[ChatMessage]) -> str:
    """What a follow-up is searched for: the last user message, with the previous question in
    front when this one reads as a follow-up ("and on Windows?", "它支持哪些格式？")."""
    users = [m.content.strip() for m in messages if m.role == "user"]
    question = users[-1] if users else ""
    if len(users) > 1 and is_follow_up(question):
        return f"{users[-2][-FOLLOW_UP_CONTEXT:]}\n{question}"
    return question


def is_follow_up(question: str) -> bool:
    """A short question or one that points back ("it", "that", "它", "这个") needs the previous
    turn to be searched for; a long self-contained one does not."""
    han = len(_HAN.findall(question))
    if han:
        return han < 8 or bool(_ANAPHORA_ZH.search(question))
    words = len(question.split())
    return words < 5 or bool(_ANAPHORA_EN.search(question))


def close_enough(hits: Sequence[Hit]) -> list[Hit]:
    """The hits whose relevance is close enough to the best one's (CLOSE_ENOUGH), in their
    order; all of them when the best has none to compare with. A hit that holds the question
    nearly word for word always stays."""
    best = max((hit.relevance for hit in hits), default=0.0)
    return [hit for hit in hits if hit.verbatim or hit.relevance >= CLOSE_ENOUGH * best]


def close_in_words(hits: Sequence[Hit], question: str) -> list[Hit]:
    """Of the hits written in the question's script (terms.script), those holding at least
    WORDS_CLOSE of the question's terms that the best-holding one holds, when that one holds
    WORDS_DECIDE of them; every hit in another script (the vectors found it: it can share no
    word with the question), in their order. A hit that holds the question nearly word for
    word always stays."""
    kind, asked = script(question), question_terms(question)
    shares = [term_share(asked, f"{h.passage.title} {h.passage.location} {h.passage.text}")
              if script(h.passage.text) == kind else None for h in hits]
    best = max((share for share in shares if share is not None), default=0.0)
    if best < WORDS_DECIDE:
        return list(hits)
    return [hit for hit, share in zip(hits, shares, strict=True)
            if hit.verbatim or share is None or share >= WORDS_CLOSE * best]


# ---- the prompt


def chinese(text: str) -> bool:
    return _HAN.search(text) is not None


def shown(hit: Hit, question: str) -> str:
    """What the prompt quotes of a passage: the sentences matching the question, with their
    neighbours (runtime/knowledge/excerpt.py)."""
    return excerpt(hit.passage.text, question)


def passage_line(n: int, hit: Hit, question: str = "") -> str:
    """`[1] Title — location: text`, the form the model cites and the page links; the text is
    what shown() quotes of it for `question`."""
    return f"{label(n, hit)} {shown(hit, question)}"


def label(n: int, hit: Hit) -> str:
    """`[1] Title — location:`, what a passage's line in the prompt opens with."""
    p = hit.passage
    location = p.location
    if location.startswith(f"{p.title} › "):  # a heading path starts with the title heading
        location = location[len(p.title) + 3:]
    where = f" — {location}" if location and location != p.title else ""
    return f"[{n}] {p.title}{where}:"


INSTRUCTION_EN = (
    "Answer the user's question using only the numbered sources in their message. Cite the "
    "source of each fact inline, like [1]. Answer briefly in your own words; do not copy the "
    "sources out. If there are no sources, or they do not answer the question, say that the "
    "documents do not cover it.")
INSTRUCTION_ZH = (
    "只根据用户消息中带编号的资料回答问题，并在每个事实后用 [1] 这样的编号注明出处。用自己的话"
    "简要回答，不要照抄资料。如果没有资料，或资料回答不了这个问题，就说文档中没有涉及。请用中文回答。")
# No worked example: with one (a kettle's descaling in the instruction), the 0.5B model
# copied it out as the answer, and on the tune split of bench.knowledge_eval (passages quoted
# as runtime/knowledge/excerpt.py cuts them) the fact was in 10 answers of 23 without it
# against 8 with it, the right document cited as often (18), and the prompt ~60 tokens shorter.


# With no source, the question is asked as is and the system prompt says the documents do not
# cover it: given "Sources: none" the 0.5B model still cited a [1] that does not exist.
NOT_COVERED_EN = ("The user's documents do not cover the next question. Say so in one "
                  "sentence, and cite nothing.")
NOT_COVERED_ZH = "用户的文档没有涉及下面这个问题。请用一句话说明文档中没有涉及，不要标注任何编号。"


# Said again right before the question, where a 0.5B model heeds it: with the instruction
# only in the system prompt, a fifth of its answers cited nothing, and given no source it
# answered every off-topic question from memory (the bilingual test set).
REMINDER_EN = ("Answer from the sources above, and put the number of the source after each "
               "fact, like [1]. If they do not answer the question, say that the documents do "
               "not cover it.")
REMINDER_ZH = ("请根据上面的资料回答，并在每个事实后注明资料的编号，如 [1]。"
               "如果资料回答不了这个问题，就说文档中没有涉及。")
# A small model that has copied a source out sometimes goes on to copy the reminder after it
# ("… Answer from the sources above, and put the number of the source after each fact, like [",
# a Debian manual's bundle, issue #24): a grounded answer ends where an echo of it begins.
# So it does where it starts the question again on a line of its own ("…是实线。\n\n问题：
# PSTricks 中的缺省线宽是多少", a LaTeX manual's bundle).
ECHOES = ("Answer from the sources above", "请根据上面的资料回答", "\nQuestion: ", "\n问题：")
# After the question, with the sentence to answer given word for word: told before the
# question only to say so, the 0.5B model still answered four of six off-topic Chinese
# questions from memory; this way it answered none of them.
NOT_COVERED_NOTE_EN = ("The documents do not cover this question. Answer only: \"The documents "
                       "do not cover this question.\"")
NOT_COVERED_NOTE_ZH = "文档中没有涉及这个问题。请只回答：“文档中没有涉及这个问题。”"


def instruction(question: str, hits: Sequence[Hit]) -> str:
    """What the system prompt gains: the same text turn after turn (per language, and with
    or without sources), so the KV cache of the chat before the question stays reusable."""
    zh = chinese(question)
    if not hits:
        return NOT_COVERED_ZH if zh else NOT_COVERED_EN
    return INSTRUCTION_ZH if zh else INSTRUCTION_EN


def grounded_question(question: str, hits: Sequence[Hit], query: str | None = None) -> str:
    """The user message: the question, the numbered passages (what shown() quotes of them for
    `query`, the question itself by default), the instruction again, then the question again
    (with no passage, the question, then that the documents do not cover it).

    The question comes first too, so the model reads the passages knowing what it looks for:
    asked only after them, the 0.5B model often answered with a bare "[2]" or copied the first
    lines of a passage; on the tune split of bench.knowledge_eval the fact was then in 11
    answers of 23, and with the question first too in 13, the right document cited as often
    (22 of 23)."""
    zh = chinese(question)
    if not hits:
        return f"问题：{question}\n\n（{NOT_COVERED_NOTE_ZH}）" if zh else \
            f"Question: {question}\n\n({NOT_COVERED_NOTE_EN})"
    passages = "\n\n".join(passage_line(i, hit, query or question)
                           for i, hit in enumerate(hits, 1))
    if zh:
        return f"问题：{question}\n\n资料：\n\n{passages}\n\n{REMINDER_ZH}\n\n问题：{question}"
    return (f"Question: {question}\n\nSources:\n\n{passages}\n\n{REMINDER_EN}\n\n"
            f"Question: {question}")


def with_instruction(head: Sequence[ChatMessage], text: str) -> list[ChatMessage]:
    """The system messages with the instruction after the (bundle's or caller's) system
    prompt; a system message of its own when there is none."""
    if not head:
        return [ChatMessage("system", text)]
    last = head[-1]
    return [*head[:-1], dataclasses.replace(last, content=f"{last.content.rstrip()}\n\n{text}")]


def answer_room(n_ctx: int, max_tokens: int) -> int:
    """Tokens kept free for the answer: max_tokens, but never more than half the context (a
    request asking for the whole context still gets its passages); -1 (until the context is
    full) keeps a quarter."""
    if max_tokens < 0:
        return n_ctx // 4
    return min(max_tokens, n_ctx // 2)


def ground(messages: Sequence[ChatMessage], hits: Sequence[Hit], count: Counter,
           budget: int) -> Grounding:
    """The chat with the passages in its last (user) message, fitted to `budget` tokens: the
    lowest-ranked passages go first, then the oldest messages (a user message and what
    answered it, so roles still alternate); the system prompt, the last exchange and the
    question stay."""
    head = [m for m in messages[:-1] if m.role == "system"]
    history = [m for m in messages[:-1] if m.role != "system"]
    split = max(0, len(history) - RECENT)
    older, recent = history[:split], history[split:]
    question = messages[-1]
    query = query_for(messages)  # what the passages were found for, and are cut to
    kept = list(hits)

    def chat(passages: Sequence[Hit], earlier: Sequence[ChatMessage]) -> list[ChatMessage]:
        if hits and not passages:
            # Relevant passages that did not fit: the question as asked, for the model must
            # not be told that the documents do not cover it.
            return [*head, *earlier, *recent, question]
        last = dataclasses.replace(question,
                                   content=grounded_question(question.content, passages,
                                                             query))
        system = with_instruction(head, instruction(question.content, passages))
        return [*system, *earlier, *recent, last]

    tokens = count(chat(kept, older))
    while kept and tokens > budget:
        kept.pop()
        tokens = count(chat(kept, older))
    dropped = 0
    if older and tokens > budget:
        dropped, tokens = _fewest_to_drop(older, lambda earlier: count(chat(kept, earlier)),
                                          budget)
        older = older[dropped:]
    spent = tokens - count([*head, *older, *recent, question]) if kept or not hits else 0
    usage = KnowledgeUsage(len(kept), len(hits) - len(kept), spent, dropped)
    return Grounding(tuple(chat(kept, older)), tuple(kept), usage)


def _fewest_to_drop(older: list[ChatMessage], count: Callable[[list[ChatMessage]], int],
                    budget: int) -> tuple[int, int]:
    """How many of the oldest messages to drop, whole turns (the rest starts at a user
    message: some templates refuse a chat that does not alternate user and assistant), for
    the chat to fit `budget`, and its tokens then. Bisected: each count renders and tokenizes
    the whole chat, so dropping a turn at a time was quadratic in the history (8,000
    messages: 77 s); this is about log2(turns) counts. Fewer messages never count more."""
    cuts = [0, *(i for i in range(1, len(older)) if older[i].role == "user"), len(older)]
    lo, hi = 1, len(cuts) - 1  # the answer is in cuts[lo..hi]; cuts[0] (none) is too long
    tokens_at = {hi: count(older[cuts[hi]:])}
    while lo < hi:
        mid = (lo + hi) // 2
        tokens_at[mid] = count(older[cuts[mid]:])
        if tokens_at[mid] <= budget:
            hi = mid
        else:
            lo = mid + 1
    return cuts[hi], tokens_at[hi]


# ---- /v1/embeddings


def embedding_text(text: str, info: dict[str, Any] | None) -> str:
    """What the bundled embedder embeds for an /v1/embeddings input. e5 was trained with
    "query: " or "passage: " in front of every text (its vectors drift without one), and API
    callers (LangChain, Flowise) do not know that. The query prefix is e5's advice for
    symmetric uses (similarity, clustering) and what the index embeds questions with, so a text
    without either of the embedder's prefixes gets it; a caller that knows them may send its
    own. An embedder without prefixes (the manifest records them) embeds the text as is."""
    model = (info or {}).get("embedding_model") or {}
    query, passage = model.get("query_prefix") or "", model.get("passage_prefix") or ""
    if not query or text.startswith(query) or (passage and text.startswith(passage)):
        return text
    return query + text


def cited_list(hits: Sequence[Hit]) -> list[str]:
    """`[1] manual/install.md — Install › Linux` lines, for a terminal."""
    return [f"[{i}] {h.passage.document}" + (f" — {h.passage.location}" if h.passage.location
                                             else "") for i, h in enumerate(hits, 1)]


# ---- the turn


def answer(knowledge: Knowledge, request: GenerationRequest,
           count: Callable[[GenerationRequest], int], n_ctx: int,
           generate: Callable[[GenerationRequest], Iterator[Event]]) -> Iterator[Event]:
    """A chat turn answered from the documents: Sources first, then what `generate` yields,
    its Finish carrying the knowledge counts. Retrieval and the prompt are built here, before
    the first event, so a prompt that cannot fit raises as it would without knowledge.
    count: the prompt's tokens for a request (its passages tokenized as text, as sent)."""
    messages = request.messages or ()
    if not messages or messages[-1].role != "user":
        return generate(request)  # an assistant prefix to continue: nothing to ask
    started = time.perf_counter_ns()
    hits = sources_for(knowledge, messages)
    budget = n_ctx - answer_room(n_ctx, request.max_tokens)
    query = query_for(messages)
    request = dataclasses.replace(request, passages=tuple(shown(h, query) for h in hits))
    grounding = ground(messages, hits, lambda chat: count(dataclasses.replace(
        request, messages=tuple(chat))), budget)
    grounding = dataclasses.replace(grounding, usage=dataclasses.replace(
        grounding.usage, search_ns=time.perf_counter_ns() - started))
    _log(grounding)
    stop = request.stop + ECHOES if grounding.hits else request.stop
    events = generate(dataclasses.replace(request, messages=grounding.messages, stop=stop,
                                          words_first=bool(grounding.hits)))
    if grounding.hits:
        labels = [label(n, hit) for n, hit in enumerate(grounding.hits, 1)]
        events = attributed(without_label(events, labels), messages[-1].content, grounding.hits)
    return _with_sources(grounding, events)


def _with_sources(grounding: Grounding, events: Iterator[Event]) -> Iterator[Event]:
    yield Sources(grounding.hits)
    for event in events:
        if isinstance(event, Finish):
            event = dataclasses.replace(event, knowledge=grounding.usage)
        yield event


def _log(grounding: Grounding) -> None:
    u = grounding.usage
    if not u.passages and not u.passages_left_out:
        log.info("knowledge: no passage is relevant; the model is told the documents do not "
                 "cover the question")
        return
    line = (f"knowledge: {u.passages} passage(s) in the prompt ({u.tokens} tokens, "
            f"found in {u.search_ns / 1e6:.1f} ms)")
    if u.passages_left_out:
        line += f", {u.passages_left_out} left out to fit the context"
    if u.turns_left_out:
        line += f", {u.turns_left_out} older message(s) left out"
    log.info("%s", line)
