from pathlib import Path

import pytest

from handlers.core.settings import Settings, SettingsError, load_settings


def test_defaults_match_the_documented_ones():
    settings = load_settings({}, env_file=None)
    assert settings.vllm_base_urls == ("http://127.0.0.1:8000/v1",)
    assert settings.vllm_api_key is None and settings.vllm_model is None
    assert (settings.max_images_per_request, settings.max_model_len, settings.max_tokens) == (
        4,
        65536,
        1024,
    )
    assert settings.max_upload_bytes == 20 * 1024 * 1024
    assert settings.prompt_budget == 65536 - 1024


def test_environment_beats_dotenv_file_which_beats_default(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_TOKENS=512\nVLLM_MODEL=from-file\n")
    settings = load_settings({"VLLM_MODEL": "from-env"}, env_file=env_file)
    assert settings.vllm_model == "from-env"
    assert settings.max_tokens == 512
    assert settings.max_model_len == 65536


def test_several_base_urls_for_failover():
    settings = load_settings(
        {"VLLM_BASE_URL": "http://a:8000/v1/, http://b:8000/v1"}, env_file=None
    )
    assert settings.vllm_base_urls == ("http://a:8000/v1", "http://b:8000/v1")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MAX_IMAGES_PER_REQUEST", "four"),
        ("MAX_MODEL_LEN", "-1"),
        ("MAX_UPLOAD_MB", "0"),
        ("VLLM_BASE_URL", "127.0.0.1:8000"),
        ("TEMPERATURE", "7"),
        ("ANSWER_LANGUAGE", "fr"),
        ("SYSTEM_PROMPT_PLACEMENT", "middle"),
    ],
)
def test_a_malformed_value_names_its_key(key: str, value: str):
    with pytest.raises(SettingsError, match=key):
        load_settings({key: value}, env_file=None)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("STREAM_INTERVAL", "four", "a positive whole number"),
        ("STREAM_INTERVAL", "0", "a positive whole number"),
        ("VLLM_CONNECT_RETRIES", "2.5", "zero or more"),
        ("VLLM_TIMEOUT", "soon", "a positive number"),
        ("TEMPERATURE", "warm", "a number from 0 to 2"),
    ],
)
def test_a_value_that_is_no_number_is_told_as_plainly_as_one_out_of_range(key, value, expected):
    with pytest.raises(SettingsError) as refused:
        load_settings({key: value}, env_file=None)
    assert str(refused.value) == f"{key}: expected {expected}, got {value!r}"


def test_answer_room_must_fit_the_context():
    with pytest.raises(SettingsError, match="MAX_TOKENS"):
        load_settings({"MAX_TOKENS": "4096", "MAX_MODEL_LEN": "4096"}, env_file=None)


def test_the_api_key_never_shows_in_repr():
    settings = load_settings({"VLLM_API_KEY": "sk-very-secret"}, env_file=None)
    assert settings.vllm_api_key == "sk-very-secret"
    assert "sk-very-secret" not in repr(settings)


def test_openai_and_chainlit_variables_are_ignored():
    settings = load_settings(
        {"OPENAI_API_KEY": "ci-overwrites-this", "DATABASE_URL": "postgresql://x"}, env_file=None
    )
    assert settings == Settings()
