"""A knowledge bundle's chat turns, sources and search, with fake knowledge: the prompt budget,
what is left out and said so, sources in unary and streamed answers, /knowledge/search."""

from __future__ import annotations

import dataclasses
import json

import httpx
import openai
import pytest
from conftest import free_port
from fake import FakeEngine, FakeKnowledge, FakeServer, chat_length

from runtime.generation import ChatMessage, Finish
from runtime.knowledge.passage import Hit, Passage
from runtime.knowledge.retrieve import (
    ECHOES,
    FOLLOW_UP_ADDS,
    INSTRUCTION_EN,
    INSTRUCTION_ZH,
    REMINDER_EN,
    REMINDER_ZH,
    answer_room,
    close_enough,
    close_in_words,
    find,
    ground,
    grounded_question,
    is_follow_up,
    query_for,
    sources_for,
)

PASSAGES = [
    Passage("manual/install.md", "Install", "Install › Linux",
            "To install the printer driver on Linux run the setup script as root."),
    Passage("manual/paper.pdf", "Paper", "p. 3",
            "The printer takes paper up to A3; load paper with the printed side down."),
    Passage("手册/网络.txt", "网络设置", "",
            "打印机连接 Wi-Fi 时，请在设置菜单中选择网络，然后输入密码。"),
    Passage("notes/<script>.html", "<b>Hostile</b>", "",
            "<script>alert(1)</script> the printer toner is replaced from the front."),
]


def hits(n: int, words: int = 20) -> list[Hit]:
    """n passages of `words` words each, best first."""
    return [Hit(Passage(f"doc{i}.md", f"Doc {i}", f"§{i}", " ".join(["word"] * words)),
                1.0 - i / 10) for i in range(n)]


def chat(*contents: str) -> list[ChatMessage]:
    """system, then alternating user/assistant messages, ending with a user question."""
    roles = ["user", "assistant"]
    return [ChatMessage("system", "Be brief."),
            *(ChatMessage(roles[i % 2], c) for i, c in enumerate(contents))]


# ---- the prompt budget


def test_all_passages_fit_when_there_is_room():
    messages = chat("how do I install it?")
    g = ground(messages, hits(3), chat_length, budget=1000)
    assert [h.passage.document for h in g.hits] == ["doc0.md", "doc1.md", "doc2.md"]
    last = g.messages[-1].content
    assert "[1] Doc 0 — §0: word" in last and "[3] Doc 2 — §2:" in last
    # The instruction again right before the question, where a small model heeds it.
    assert last.endswith("like [1]. If they do not answer the question, say that the documents "
                         "do not cover it.\n\nQuestion: how do I install it?")
    # and the question first too, so the passages are read knowing what is asked (#24)
    assert last.startswith("Question: how do I install it?\n\nSources:\n\n[1] Doc 0")
    system = g.messages[0].content
    assert system.startswith("Be brief.\n\n")  # the bundle's system prompt, then the instruction
    assert "Cite the source of each fact inline, like [1]" in system
    assert g.usage.passages == 3 and g.usage.passages_left_out == 0
    assert g.usage.tokens == chat_length(g.messages) - chat_length(messages)


def test_lowest_ranked_passages_go_first_and_the_budget_holds():
    messages = chat("how do I install it?")
    budget = chat_length(ground(messages, hits(2), chat_length, 10_000).messages)  # room for 2
    g = ground(messages, hits(5), chat_length, budget)
    assert chat_length(g.messages) <= budget
    assert [h.passage.document for h in g.hits] == ["doc0.md", "doc1.md"]
    assert g.usage.passages_left_out == 3 and g.usage.turns_left_out == 0
    tighter = ground(messages, hits(5), chat_length, budget - 1)
    assert [h.passage.document for h in tighter.hits] == ["doc0.md"]


def test_older_turns_go_after_every_passage_but_never_the_question_or_the_last_exchange():
    long = " ".join(["old"] * 50)
    messages = chat(long, long, long, long, "what about the recent answer?",
                    "the recent answer", "and the question?")
    budget = chat_length(messages) - 60
    g = ground(messages, hits(3), chat_length, budget)
    assert chat_length(g.messages) <= budget
    assert g.hits == () and g.usage.passages_left_out == 3
    assert g.usage.turns_left_out == 2  # the oldest user message and the answer to it
    kept = [m.content for m in g.messages]
    assert kept[0] == "Be brief."  # the system prompt stays (no instruction: no passage)
    assert kept[-3:] == ["what about the recent answer?", "the recent answer",
                         "and the question?"]  # asked as is: nothing says "not covered"
    assert [m.role for m in g.messages[1:]] == ["user", "assistant"] * 2 + ["user"]


def test_a_history_of_thousands_of_messages_is_fitted_in_few_counts():
    """Each count renders and tokenizes the whole chat: dropping a turn at a time made 8,000
    messages cost thousands of counts (77 s with the real tokenizer). Bisected: a few dozen,
    and the same messages as dropping one turn at a time would keep."""
    contents = [f"message {i} " + " ".join(["old"] * 10) for i in range(7999)] + ["and now?"]
    messages = chat(*contents)
    calls = []

    def counting(ms):
        calls.append(len(ms))
        return chat_length(ms)

    budget = chat_length(messages) // 3
    g = ground(messages, hits(2), counting, budget)
    assert len(calls) < 40, len(calls)
    assert chat_length(g.messages) <= budget
    kept = g.messages[1:]
    assert kept[0].role == "user" and g.usage.turns_left_out == 8000 - len(kept)
    one_more = [*g.messages[:1], *messages[len(messages) - len(kept) - 2:]]
    assert chat_length(one_more) > budget  # the turn before it would not have fitted


def test_question_too_long_for_any_budget_is_kept_whole():
    question = " ".join(["why"] * 300)
    g = ground(chat(question), hits(2), chat_length, budget=100)
    assert g.messages[-1].content == question  # never cut; the decoder refuses it with a 400


def test_nothing_relevant_tells_the_model_the_documents_do_not_cover_it():
    g = ground(chat("who won the 1998 world cup?"), [], chat_length, budget=1000)
    assert g.hits == ()
    # Said after the question, with the sentence to answer (a 0.5B model heeds that)
    assert g.messages[-1].content == (
        "Question: who won the 1998 world cup?\n\n(The documents do not cover this question. "
        "Answer only: \"The documents do not cover this question.\")")
    assert g.messages[0].content.startswith("Be brief.\n\nThe user's documents do not cover")
    assert "[1]" not in g.messages[0].content  # it made the model cite a [1] that is not there
    assert g.usage.passages == 0 and g.usage.tokens > 0


def test_without_a_system_prompt_the_instruction_is_one():
    g = ground([ChatMessage("user", "how do I install it?")], hits(1), chat_length, 1000)
    assert [m.role for m in g.messages] == ["system", "user"]
    # the instruction alone: no worked example for a small model to copy out as its answer
    assert g.messages[0].content == INSTRUCTION_EN
    zh = ground([ChatMessage("user", "怎么安装？")], hits(1), chat_length, 1000)
    assert zh.messages[0].content == INSTRUCTION_ZH


def test_a_chinese_question_gets_its_instruction_in_chinese():
    g = ground(chat("打印机怎么连接 Wi-Fi？"), [Hit(PASSAGES[2], 0.9)], chat_length, 1000)
    assert "只根据用户消息中带编号的资料回答问题" in g.messages[0].content
    text = g.messages[-1].content
    assert "[1] 网络设置: 打印机连接" in text and text.endswith("问题：打印机怎么连接 Wi-Fi？")
    assert text.endswith("就说文档中没有涉及。\n\n问题：打印机怎么连接 Wi-Fi？")
    assert text.startswith("问题：打印机怎么连接 Wi-Fi？\n\n资料：\n\n[1] 网络设置")
    none_text = grounded_question("谁赢了比赛？", [])
    assert none_text == ("问题：谁赢了比赛？\n\n（文档中没有涉及这个问题。"
                         "请只回答：“文档中没有涉及这个问题。”）")
    none = ground(chat("谁赢了比赛？"), [], chat_length, 1000)
    assert "用户的文档没有涉及下面这个问题" in none.messages[0].content


def test_a_passage_is_named_by_title_and_location_without_saying_the_title_twice():
    from runtime.knowledge.retrieve import passage_line

    def line(title: str, location: str) -> str:
        return passage_line(2, Hit(Passage("a.md", title, location, " Text. "), 0.5))

    assert line("Router manual", "Router manual › Reset") == "[2] Router manual — Reset: Text."
    assert line("Router manual", "Router manual") == "[2] Router manual: Text."
    assert line("Router manual", "p. 3") == "[2] Router manual — p. 3: Text."
    assert line("Router manual", "") == "[2] Router manual: Text."


def test_passages_far_less_relevant_than_the_best_are_left_out():
    def hit(relevance: float) -> Hit:
        return Hit(PASSAGES[0], 0.03, relevance)

    kept = close_enough([hit(0.02), hit(0.08), hit(0.055), hit(0.06)])
    # in their order, 0.7 of the best or more: 0.055 is a distractor (kept at 0.5 before #24's
    # tune split had the 0.5B model answer from fewer passages)
    assert [h.relevance for h in kept] == [0.08, 0.06]
    assert close_enough([hit(0.0), hit(0.0)]) == [hit(0.0), hit(0.0)]  # nothing to compare
    assert close_enough([]) == []
    # A passage holding the question word for word stays, however far below the best.
    verbatim = Hit(PASSAGES[1], 0.03, 0.0, verbatim=True)
    assert close_enough([hit(0.08), verbatim, hit(0.01)]) == [hit(0.08), verbatim]


def test_passages_holding_far_fewer_of_the_questions_terms_than_the_best_are_left_out():
    def hit(title: str, text: str, verbatim: bool = False) -> Hit:
        return Hit(Passage("snownlp/README.md", title, "", text), 0.03, 0.05, verbatim)

    answers = hit("Features", "提取文本关键词（TextRank算法） 提取文本摘要（TextRank算法）")
    intro = hit("Features", "SnowNLP是一个python写的类库，可以方便的处理中文文本内容，"
                            "所有的算法都是自己实现的")
    question = "SnowNLP 提取文本关键词用什么算法？"
    # The introduction (snownlp, 文本, 算法 of ten terms) beside the feature list that answers
    # (seven of ten): the 0.5B model copied the introduction.
    assert close_in_words([intro, answers], question) == [answers]
    # The heading's words count too.
    titled = hit("提取文本关键词", "用 TextRank 算法")
    assert close_in_words([intro, titled], question) == [titled]
    # A passage holding the question word for word stays.
    said = dataclasses.replace(intro, verbatim=True)
    assert close_in_words([answers, said], question) == [answers, said]
    # Asked in the other language, the words say next to nothing: the vectors decide.
    english = [hit("Features", "Simple Chinese text processing"), hit("Install", "pip install")]
    assert close_in_words(english, "SnowNLP 的情感分析用什么训练数据？") == english
    # A passage in the other script shares no word with the question, and is not judged by
    # words: the Chinese passage answers, the English one only holds "working".
    hours = [hit("员工手册", "核心工作时间为上午十点至下午四点。"),
             hit("Leave Policy", "Your manager approves the request within five working days.")]
    assert close_in_words(hours, "What are the core working hours?") == hours
    assert close_in_words([], question) == []


def test_answer_room_never_takes_the_whole_context():
    assert answer_room(4096, 512) == 512
    assert answer_room(4096, 100_000) == 2048
    assert answer_room(4096, -1) == 1024


@pytest.mark.parametrize("question, follow_up", [
    ("and on Windows?", True), ("what does it cost?", True), ("它支持哪些格式？", True),
    ("那价格呢", True),
    ("How do I install the printer driver on a Linux machine?", False),
    ("打印机连接无线网络时需要输入什么信息", False),
])
def test_follow_up_questions_are_recognised(question, follow_up):
    assert is_follow_up(question) is follow_up


def test_a_follow_up_is_searched_with_the_previous_question():
    messages = chat("How do I install the printer driver?", "Run the script.", "and on Mac?")
    assert query_for(messages) == "How do I install the printer driver?\nand on Mac?"
    assert query_for(chat("How do I install the printer driver on a Linux machine?")) == \
        "How do I install the printer driver on a Linux machine?"


def test_a_follow_up_keeps_its_own_passages_first_and_adds_a_few():
    knowledge = FakeKnowledge(PASSAGES)
    question = "which paper does the printer take, and which side down?"  # "which": follow-up?
    alone = sources_for(knowledge, chat(question))
    assert [h.passage.document for h in alone] == \
        [h.passage.document for h in find(knowledge, question)]
    follow = chat("How do I connect the printer to Wi-Fi?", "Select the network.",
                  "and does it take A3 paper?")
    hits = sources_for(knowledge, follow)
    assert knowledge.queries[-2:] == ["and does it take A3 paper?",
                                      "How do I connect the printer to Wi-Fi?\n"
                                      "and does it take A3 paper?"]
    own = find(knowledge, "and does it take A3 paper?")
    assert own and hits[:len(own)] == own  # the question's own passages, as search gives them
    assert len(own) < len(hits) <= len(own) + FOLLOW_UP_ADDS  # and the Wi-Fi passage


# ---- over HTTP, with the fake engine


@pytest.fixture
def knowledge() -> FakeKnowledge:
    return FakeKnowledge(PASSAGES)


@pytest.fixture
def site(knowledge):
    engine = FakeEngine(delay=0, knowledge=knowledge)
    with FakeServer(engine, free_port(), starters=["How do I install the driver?"]) as server:
        server.engine = engine
        yield server


@pytest.fixture
def client(site):
    return openai.OpenAI(base_url=site.url + "/v1", api_key="unused")


ASK = [{"role": "user", "content": "How do I install the printer driver on Linux?"}]


def test_unary_chat_carries_the_sources_and_the_knowledge_usage(site, client):
    reply = client.chat.completions.create(model="fake", messages=ASK, max_tokens=4)
    body = reply.model_dump()
    sources = body["sources"]
    assert [s["id"] for s in sources] == list(range(1, len(sources) + 1))
    assert sources[0]["document"] == "manual/install.md"
    assert sources[0]["location"] == "Install › Linux" and sources[0]["title"] == "Install"
    assert sources[0]["text"].startswith("To install") and sources[0]["score"] > 0
    knowledge = body["usage"]["knowledge"]
    assert knowledge["passages"] == len(sources) and knowledge["passages_left_out"] == 0
    assert knowledge["tokens"] > 0 and knowledge["search_ms"] >= 0
    prompt = site.engine.requests[-1].messages[-1].content
    assert "[1] Install — Linux: To install" in prompt


def test_streamed_chat_has_the_sources_on_its_first_chunk(client):
    chunks = list(client.chat.completions.create(
        model="fake", messages=ASK, max_tokens=4, stream=True,
        stream_options={"include_usage": True}))
    first = chunks[0].model_dump()
    assert first["sources"][0]["document"] == "manual/install.md"
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert all("sources" not in c.model_dump() for c in chunks[1:])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "w0 w1 w2 w3 "
    assert chunks[-1].usage.model_dump()["knowledge"]["passages"] == len(first["sources"])


def test_an_uncited_sentence_a_passage_holds_is_cited_in_the_stream(site, client):
    site.engine.script = ["The driver is installed by running the setup", " script as root.",
                          " Ask me more", Finish("stop", 3, 4, 0)]
    chunks = list(client.chat.completions.create(model="fake", messages=ASK, stream=True))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and
              c.choices[0].delta.content]
    # The model's pieces go out as they come, the full stop held back for the citation.
    assert pieces == ["The driver is installed by running the setup", " script as root",
                      " [1]. Ask me more"]
    assert chunks[0].model_dump()["sources"][0]["document"] == "manual/install.md"


def test_an_answer_that_opens_by_copying_a_passages_label_keeps_only_its_citation(site, client):
    # "[1] Install — Linux: To install ..." as the 0.5B model writes most answers.
    site.engine.script = ["[1] Inst", "all — Li", "nux: To install the printer driver on Linux",
                          " run the setup script as root.", Finish("stop", 3, 9, 0)]
    chunks = list(client.chat.completions.create(model="fake", messages=ASK, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[1] To install the printer driver on Linux run the setup script as root."


def test_a_grounded_answer_stops_where_it_would_echo_the_reminder_or_the_question(site,
                                                                                 client):
    # The 0.5B model copied a source, then the reminder after it, into an answer; or asked
    # the question again after its answer ("\n\n问题：PSTricks 中的缺省线宽是多少…").
    assert REMINDER_EN.startswith(ECHOES[0]) and REMINDER_ZH.startswith(ECHOES[1])
    client.chat.completions.create(model="fake", messages=ASK, max_tokens=4, stop=["END"])
    request = site.engine.requests[-1]
    assert request.stop == ("END", *ECHOES)
    assert {"\nQuestion: ", "\n问题："} <= set(ECHOES)
    assert request.words_first  # never only "[2]" (the decoder's test shows the bar)
    off_topic = [{"role": "user", "content": "Who won the 1998 football World Cup?"}]
    client.chat.completions.create(model="fake", messages=off_topic, max_tokens=4, stop=["END"])
    request = site.engine.requests[-1]
    assert request.stop == ("END",)  # no source given: nothing to echo
    assert not request.words_first


def test_knowledge_false_skips_retrieval(site, knowledge, client):
    reply = client.chat.completions.create(model="fake", messages=ASK, max_tokens=2,
                                           extra_body={"knowledge": False})
    body = reply.model_dump()
    assert "sources" not in body and "knowledge" not in body["usage"]
    assert knowledge.queries == []
    assert site.engine.requests[-1].messages[-1].content == ASK[0]["content"]


def test_nothing_relevant_gives_no_sources_and_the_not_covered_instruction(site, client):
    reply = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": "Who painted the Mona Lisa?"}],
        max_tokens=2)
    assert reply.model_dump()["sources"] == []
    sent = site.engine.requests[-1].messages
    assert sent[-1].content.startswith("Question: Who painted the Mona Lisa?\n\n(The documents")
    assert "documents do not cover the next question" in sent[0].content


def test_a_chat_too_long_for_the_context_says_what_was_left_out(site, client):
    long = " ".join(["printer"] * 60)
    messages = [{"role": "user", "content": long}, {"role": "assistant", "content": long},
                {"role": "user", "content": long}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "How do I install the printer driver on Linux?"}]
    reply = client.chat.completions.create(model="fake", messages=messages, max_tokens=64)
    usage = reply.model_dump()["usage"]["knowledge"]
    assert usage["passages_left_out"] >= 1 and usage["messages_left_out"] == 2
    sent = site.engine.requests[-1].messages
    assert chat_length(sent) <= FakeEngine.n_ctx - 64
    assert sent[-1].content == messages[-1]["content"] and sent[-2].content == "ok"


def test_completions_never_retrieve(knowledge, client):
    reply = client.completions.create(model="fake", prompt="install the printer", max_tokens=2)
    assert "sources" not in reply.model_dump() and knowledge.queries == []


@pytest.mark.parametrize("question", [
    "How do I install the printer driver on Linux?", "printer paper A3 printed side",
    "打印机连接 Wi-Fi 需要输入什么？", "toner printer", "Who painted the Mona Lisa?"])
def test_a_chats_sources_are_what_knowledge_search_returns(site, client, question):
    """One retrieval path (issue #24): the same question gets the same passages, in the same
    order, from /knowledge/search (its default top_k) and as a chat answer's sources."""
    found = httpx.post(site.url + "/knowledge/search", json={"query": question}).json()
    reply = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": question}], max_tokens=2)
    sources = reply.model_dump()["sources"]
    assert [(s["document"], s["text"], s["score"]) for s in sources] == \
        [(r["document"], r["text"], r["score"]) for r in found["results"]]


def test_knowledge_search_returns_ranked_passages(site):
    r = httpx.post(site.url + "/knowledge/search", json={"query": "printer paper toner",
                                                         "top_k": 2})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 2 and results[0]["document"] == "manual/paper.pdf"
    assert set(results[0]) == {"document", "title", "location", "text", "score"}
    assert results[0]["score"] >= results[1]["score"]
    # The install passage holds one of the three terms, the paper passage all: left out, as
    # the chat leaves it out (retrieve.close_in_words).
    r = httpx.post(site.url + "/knowledge/search", json={"query": "printer paper A3",
                                                         "top_k": 2})
    assert [x["document"] for x in r.json()["results"]] == ["manual/paper.pdf"]
    none = httpx.post(site.url + "/knowledge/search", json={"query": "Mona Lisa"})
    assert none.json() == {"results": []}
    # GET, as a browser's address bar or curl asks: the same results.
    got = httpx.get(site.url + "/knowledge/search",
                    params={"query": "printer paper toner", "top_k": 2})
    assert got.status_code == 200 and got.json()["results"] == results
    bad = httpx.get(site.url + "/knowledge/search", params={"query": " ", "top_k": 2})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "query"


@pytest.mark.parametrize("body, param", [({"query": "  "}, "query"), ({}, "query"),
                                         ({"query": "x", "top_k": 0}, "top_k"),
                                         ({"query": "x", "top_k": 500}, "top_k")])
def test_knowledge_search_rejects_bad_input_with_one_line(site, body, param):
    r = httpx.post(site.url + "/knowledge/search", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param and "\n" not in r.json()["error"]["message"]


def test_knowledge_search_without_documents_is_404():
    with FakeServer(FakeEngine(delay=0), free_port()) as server:
        r = httpx.post(server.url + "/knowledge/search", json={"query": "printer"})
        assert r.status_code == 404
        assert "without --knowledge" in r.json()["error"]["message"] or \
            "no documents" in r.json()["error"]["message"]
        props = httpx.get(server.url + "/props").json()
        assert props["knowledge"] is None and props["starters"] == []


def test_knowledge_search_needs_the_api_key_and_a_local_host(knowledge):
    engine = FakeEngine(delay=0, knowledge=knowledge)
    with FakeServer(engine, free_port(), api_key="sekrit") as server:
        url = server.url + "/knowledge/search"
        assert httpx.post(url, json={"query": "printer"}).status_code == 401
        ok = httpx.post(url, json={"query": "printer"},
                        headers={"Authorization": "Bearer sekrit"})
        assert ok.status_code == 200 and ok.json()["results"]
        evil = httpx.post(url, json={"query": "printer"},
                          headers={"Authorization": "Bearer sekrit", "Host": "evil.example"})
        assert evil.status_code in (400, 403, 421)


def test_props_describe_the_knowledge_and_the_starters(site):
    props = httpx.get(site.url + "/props").json()
    assert props["knowledge"]["documents"] == 4 and props["knowledge"]["chunks"] == 4
    assert props["starters"] == ["How do I install the driver?"]


def test_embeddings_use_the_bundled_embedder_with_e5s_query_prefix(knowledge, client):
    result = client.embeddings.create(model="fake", input=["hello", "passage: as is"],
                                      encoding_format="float")
    assert [d.embedding for d in result.data] == [[0.6, 0.8, 0.0]] * 2
    assert knowledge.embedded == ["query: hello", "passage: as is"]


def test_embedding_text_follows_the_embedders_prefixes():
    from runtime.knowledge.retrieve import embedding_text

    e5 = {"embedding_model": {"query_prefix": "query: ", "passage_prefix": "passage: "}}
    assert embedding_text("hello", e5) == "query: hello"
    assert embedding_text("passage: hello", e5) == "passage: hello"
    plain = {"embedding_model": {"query_prefix": "", "passage_prefix": ""}}
    assert embedding_text("hello", plain) == "hello" and embedding_text("hello", None) == "hello"


def test_sources_keep_hostile_document_text_as_data(site):
    r = httpx.post(site.url + "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "how is the printer toner replaced?"}],
        "max_tokens": 1})
    sources = r.json()["sources"]
    hostile = next(s for s in sources if s["document"] == "notes/<script>.html")
    assert hostile["text"].startswith("<script>alert(1)</script>")  # the page renders it as text
    assert json.loads(r.text)["sources"] == sources


CARE = Passage("manual/care.md", "Printer care", "Printer care › Toner", "\n".join([
    "Keep the printer away from direct sunlight.", "Clean the glass with a dry cloth.",
    "Replace the toner cartridge every 2,000 pages.", "Use only the maker's cartridges.",
    "Recycle empty cartridges at any dealer.", "Switch the printer off before moving it.",
    "Store paper in a dry place."]))


def test_the_prompt_quotes_the_matching_sentences_and_the_sources_give_the_whole_passage():
    engine = FakeEngine(delay=0, knowledge=FakeKnowledge([CARE]))
    with FakeServer(engine, free_port()) as server:
        r = httpx.post(server.url + "/v1/chat/completions", json={"max_tokens": 2, "messages": [
            {"role": "user", "content": "How often should the toner cartridge be replaced?"}]})
        found = httpx.post(server.url + "/knowledge/search", json={
            "query": "How often should the toner cartridge be replaced?"}).json()["results"]
    assert [s["text"] for s in r.json()["sources"]] == [f["text"] for f in found] == [CARE.text]
    request = engine.requests[-1]
    prompt = request.messages[-1].content
    assert ("[1] Printer care — Toner: Replace the toner cartridge every 2,000 pages.\n"
            "Use only the maker's cartridges.") in prompt
    assert "sunlight" not in prompt and "dry cloth" not in prompt and "Store paper" not in prompt
    # what is quoted is tokenized as text (a document cannot write control tokens)
    assert request.passages and all(p in prompt for p in request.passages)
