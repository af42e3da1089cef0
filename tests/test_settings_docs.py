"""`.env.example` and the README's settings table are what the settings table generates."""

from dataclasses import fields
from pathlib import Path

import pytest

from handlers.core import settings_docs
from handlers.core.settings import Settings, load_settings, variables

REGENERATE = f"run `{settings_docs.COMMAND}` after changing handlers/core/settings.py"


def test_env_example_is_what_the_table_generates():
    assert settings_docs.ENV_EXAMPLE.read_text("utf-8") == settings_docs.env_example(), REGENERATE


def test_the_readme_table_is_what_the_table_generates():
    readme = settings_docs.README.read_text("utf-8")
    assert readme == settings_docs.readme_with_table(readme), REGENERATE


def test_env_example_read_as_settings_gives_the_defaults():
    """What setup.sh copies to `.env` changes nothing until someone edits it."""
    assert load_settings({}, env_file=settings_docs.ENV_EXAMPLE) == Settings()


def test_every_field_is_a_row_and_every_name_is_used_once():
    names = [variable.name for variable in variables()]
    assert len(names) == len(fields(Settings)) and len(set(names)) == len(names)


@pytest.mark.parametrize("variable", variables(), ids=lambda variable: variable.name)
def test_each_default_reads_back_as_written_or_the_docs_say_what_empty_means(variable):
    written = settings_docs.env_value(variable.default)
    if written and not variable.derive:
        assert variable.parse(written) == variable.default
    else:
        assert variable.shown, f"{variable.name}: say in `shown` what an empty value means"


def test_a_stale_file_is_named_with_the_command_and_rewritten(tmp_path: Path, monkeypatch, capsys):
    stale = tmp_path / ".env.example"
    stale.write_text(settings_docs.env_example().replace("MAX_TOKENS=1024", "MAX_TOKENS=512"))
    readme = tmp_path / "README.md"
    readme.write_text(settings_docs.README.read_text("utf-8"))
    monkeypatch.setattr(settings_docs, "ROOT", tmp_path)
    monkeypatch.setattr(settings_docs, "ENV_EXAMPLE", stale)
    monkeypatch.setattr(settings_docs, "README", readme)
    assert settings_docs.main(["--check"]) == 1
    assert (
        capsys.readouterr().out
        == f".env.example differs from the settings table; run {settings_docs.COMMAND}\n"
    )
    assert settings_docs.main([]) == 0
    assert stale.read_text() == settings_docs.env_example()
    assert settings_docs.main(["--check"]) == 0


def test_a_readme_without_the_markers_is_refused_not_appended_to():
    with pytest.raises(ValueError, match="settings table"):
        settings_docs.readme_with_table("# a README without the block\n")
