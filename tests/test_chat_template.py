"""Chat-template rendering in-process, as transformers renders templates; and BOS handling
against a real tokenizer (the tiny model's)."""

from __future__ import annotations

import json

import pytest

from runtime.chat.fallbacks import CHATML, GEMMA
from runtime.chat.template import ChatTemplate
from runtime.errors import RequestError, TemplateError
from runtime.generation import ChatMessage

CHAT = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello."), ChatMessage("user", "你好")]


def test_gemma_fallback_folds_the_system_prompt_into_the_first_user_turn():
    text = ChatTemplate(GEMMA, bos_token="<bos>").render(CHAT)
    assert text == ("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                    "<start_of_turn>model\nHello.<end_of_turn>\n"
                    "<start_of_turn>user\n你好<end_of_turn>\n<start_of_turn>model\n")


def test_chatml_fallback_and_no_generation_prompt():
    text = ChatTemplate(CHATML).render(CHAT[:2], add_generation_prompt=False)
    assert text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


def test_raise_exception_becomes_a_request_error_naming_messages():
    template = ChatTemplate("{% if messages[0]['role'] != 'user' %}"
                            "{{ raise_exception('Conversation roles must alternate') }}{% endif %}")
    with pytest.raises(RequestError, match="roles must alternate") as e:
        template.render(CHAT)
    assert e.value.param == "messages" and e.value.status == 400


def test_tojson_keeps_non_ascii_and_takes_transformers_arguments():
    template = ChatTemplate("{{ messages[0]['content'] | tojson }}|"
                            "{{ {'b': 1, 'a': '中'} | tojson(indent=1, sort_keys=True) }}")
    text = template.render([ChatMessage("user", "你好 \"x\"")])
    first, second = text.split("|", 1)
    assert first == '"你好 \\"x\\""'
    assert json.loads(second) == {"a": "中", "b": 1} and second.startswith('{\n "a"')


def test_trim_blocks_loop_controls_strftime_and_generation_tag():
    template = ChatTemplate("{% for m in messages %}\n{% if loop.index > 1 %}{% break %}{% endif %}"
                            "{% generation %}{{ m['content'] }}{% endgeneration %}\n{% endfor %}"
                            "{{ strftime_now('%Y') | length }}")
    assert template.render(CHAT) == "Be brief.4"  # trim_blocks ate the newlines after tags


def test_a_template_that_does_not_parse_is_a_template_error():
    with pytest.raises(TemplateError, match="does not parse"):
        ChatTemplate("{% for m in messages %}")


def test_the_template_is_sandboxed():
    template = ChatTemplate("{{ messages.__class__.__mro__ }}")
    with pytest.raises(RequestError):
        template.render(CHAT)


def test_bos_written_by_the_template_becomes_exactly_one_bos_token(tiny_gguf):
    from runtime.llama import cpu
    from runtime.llama.bindings import llama_cpp
    from runtime.llama.model import Tokenizer

    cpu.load()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(tiny_gguf).encode(), params)
    assert model
    try:
        tokenizer = Tokenizer(model)
        assert tokenizer.bos_text == "<s>"
        text = ChatTemplate("{{ bos_token }}{{ messages[0]['content'] }}",
                            tokenizer.bos_text).render([ChatMessage("user", "hello")])
        # as the engine tokenizes a rendered chat: no BOS added, special tokens parsed
        tokens = tokenizer.tokenize(text, add_bos=False, special=True)
        assert tokens[0] == 1 and tokens.count(1) == 1
        assert tokenizer.detokenize(tokens[1:]).strip() == "hello"
        # BOS as text in a user's message is not the special token when specials are off
        assert 1 not in tokenizer.tokenize("<s>hello", add_bos=False, special=False)
    finally:
        llama_cpp.llama_model_free(model)
