"""Chat templates rendered as HF does, from every place a model directory may keep one."""
import json

import pytest

from radix_runtime.chat_template import ChatTemplateError, load_chat_template

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
            "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
MESSAGES = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]


def write_config(d, **extra):
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": {"content": "<s>"}, "eos_token": "</s>", **extra}))


def test_tokenizer_config_template_with_special_tokens(tmp_path):
    write_config(tmp_path, chat_template=TEMPLATE)
    t = load_chat_template(tmp_path)
    assert t.render(MESSAGES) == "<s><system>S<user>hi<assistant>"
    assert t.render(MESSAGES, add_generation_prompt=False) == "<s><system>S<user>hi"


def test_jinja_file_and_named_list(tmp_path):
    write_config(tmp_path, chat_template=[{"name": "tool_use", "template": "T"},
                                          {"name": "default", "template": "D{{ eos_token }}"}])
    assert load_chat_template(tmp_path).render(MESSAGES) == "D</s>"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "P"}))  # processors'
    assert load_chat_template(tmp_path).render(MESSAGES) == "P"
    (tmp_path / "chat_template.jinja").write_text("J")
    assert load_chat_template(tmp_path).render(MESSAGES) == "J"


def test_override_and_missing(tmp_path):
    write_config(tmp_path)
    assert load_chat_template(tmp_path) is None
    assert "<|im_start|>user\nhi<|im_end|>" in load_chat_template(tmp_path, "chatml").render(MESSAGES)
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"chat_template": "F"}))
    assert load_chat_template(tmp_path, str(f)).render(MESSAGES) == "F"
    with pytest.raises(ChatTemplateError):
        load_chat_template(tmp_path, "no-such-template")


def test_hf_globals_and_sandbox(tmp_path):
    write_config(tmp_path, chat_template="{% if messages|length > 1 %}"
                 "{{ raise_exception('only one message') }}{% endif %}{{ messages|tojson }}")
    t = load_chat_template(tmp_path)
    assert t.render([{"role": "user", "content": "é"}]) == '[{"role": "user", "content": "é"}]'
    with pytest.raises(ChatTemplateError, match="only one message"):
        t.render(MESSAGES)
    write_config(tmp_path, chat_template="{{ ''.__class__.__mro__ }}")
    with pytest.raises(ChatTemplateError):
        load_chat_template(tmp_path).render(MESSAGES)
