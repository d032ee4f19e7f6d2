"""Request models: every SGLang sampling name accepted, defaults of unimplemented features
accepted, their use rejected, wrong types and ranges rejected with the field named."""
import pytest
from pydantic import ValidationError

from radix_runtime.server.errors import from_validation_error
from radix_runtime.server.schemas import (ChatCompletionRequest, CompletionRequest,
                                          GenerateRequest)

ALL_DEFAULTS = dict(
    max_new_tokens=128, min_new_tokens=0, n=1, stop=None, stop_token_ids=None, stop_regex=None,
    temperature=1.0, top_p=1.0, top_k=-1, min_p=0.0, frequency_penalty=0.0, presence_penalty=0.0,
    repetition_penalty=1.0, ignore_eos=False, skip_special_tokens=True,
    spaces_between_special_tokens=True, no_stop_trim=False, json_schema=None, regex=None,
    ebnf=None, structural_tag=None, logit_bias=None, sampling_seed=None, custom_params=None,
    stream_interval=None)


def error_of(model, body: str):
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(body)
    return from_validation_error(info.value)


def test_every_sglang_sampling_name_is_accepted_with_its_default():
    import json

    req = GenerateRequest.model_validate_json(
        json.dumps({"text": "hi", "sampling_params": ALL_DEFAULTS}))
    assert req.sampling_params.model_dump() == ALL_DEFAULTS


@pytest.mark.parametrize("field,value,needle", [
    ("structural_tag", '{"type": "x"}', "structural_tag"),
    ("stop_regex", '"a+"', "stop_regex"),
])
def test_unimplemented_behaviour_is_a_clear_error(field, value, needle):
    err = error_of(GenerateRequest, f'{{"text": "a", "sampling_params": {{"{field}": {value}}}}}')
    assert err.status == 400
    assert err.param == f"sampling_params.{field}"
    assert needle in err.message and "not supported" in err.message


@pytest.mark.parametrize("sp,param", [
    ('{"max_new_tokens": -1}', "sampling_params.max_new_tokens"),
    ('{"max_new_tokens": "5"}', "sampling_params.max_new_tokens"),
    ('{"temperature": -0.5}', "sampling_params.temperature"),
    ('{"top_p": 0}', "sampling_params.top_p"),
    ('{"top_k": 0}', "sampling_params.top_k"),
    ('{"stop": 3}', "sampling_params.stop"),
    ('{"stop": [1, 2]}', "sampling_params.stop.0"),
    ('{"stop": [""]}', "sampling_params.stop"),
    ('{"repetition_penalty": 0}', "sampling_params.repetition_penalty"),
    ('{"ignore_eos": 1}', "sampling_params.ignore_eos"),
    ('{"logit_bias": {"abc": 1.0}}', "sampling_params.logit_bias"),
    ('{"no_such_param": 1}', "sampling_params.no_such_param"),
])
def test_bad_sampling_params_name_the_field(sp, param):
    err = error_of(GenerateRequest, f'{{"text": "a", "sampling_params": {sp}}}')
    assert (err.status, err.param) == (400, param)
    assert err.message.startswith(param + ": ")


def test_malformed_json_and_missing_prompt():
    assert "malformed JSON" in error_of(GenerateRequest, '{"text": ').message
    assert "exactly one of text or input_ids" in error_of(GenerateRequest, '{}').message
    assert error_of(GenerateRequest, '{"input_ids": [1, "x"]}').param == "input_ids.1"


def test_unsupported_top_level_fields_only_when_used():
    GenerateRequest.model_validate_json('{"text": "a", "image_data": null, "lora_path": null, '
                                        '"return_hidden_states": false, "bootstrap_host": "x"}')
    GenerateRequest.model_validate_json('{"text": "a", "image_data": "x.png"}')  # server/vision.py
    assert error_of(GenerateRequest, '{"text": "a", "audio_data": "x.wav"}').param == "audio_data"
    assert error_of(GenerateRequest, '{"text": "a", "cache_salt": "t1"}').param == "cache_salt"


def test_openai_requests_map_to_sglang_sampling():
    req = CompletionRequest.model_validate_json(
        '{"prompt": "a", "max_tokens": 7, "temperature": 0, "stop": "x", "seed": 3, '
        '"top_k": 5, "min_tokens": 2, "user": "u", "metadata": {}}')
    sp = req.sampling(req.max_tokens)
    assert (sp.max_new_tokens, sp.temperature, sp.stop, sp.sampling_seed, sp.top_k,
            sp.min_new_tokens) == (7, 0.0, "x", 3, 5, 2)
    chat = ChatCompletionRequest.model_validate_json(
        '{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, '
        '{"type": "text", "text": "b"}]}], "max_completion_tokens": 4}')
    assert chat.max_new_tokens() == 4
    assert chat.messages[0].as_template_dict() == {"role": "user", "content": "ab"}
    err = error_of(ChatCompletionRequest, '{"messages": [{"role": "user", "content": "a"}], '
                                          '"response_format": {"type": "json_schema"}}')
    assert err.param == "response_format" and "needs a json_schema" in err.message
    err = error_of(ChatCompletionRequest, '{"messages": [{"role": "user", "content": '
                                          '[{"type": "input_audio", "input_audio": {}}]}]}')
    assert err.param == "messages.0.content" and "only text and image_url" in err.message
    chat = ChatCompletionRequest.model_validate_json(
        '{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": '
        '{"url": "u"}}, {"type": "text", "text": "b"}]}]}')
    assert chat.messages[0].image_urls() == ["u"]
    assert chat.messages[0].as_template_dict("<image>")["content"] == "<image>b"
    assert chat.messages[0].as_template_dict("<image>", content_parts=True)["content"] == [
        {"type": "image"}, {"type": "text", "text": "b"}]
