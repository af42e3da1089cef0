"""A `.env` where the tests run — a developer's, in the repository — reaches no test.

Each test writes a poisoned `.env` into a scratch folder and runs there: the app
started in this process, `load_settings()` and an app process started the way
the browser tests start theirs must all come out with the defaults. Each also
shows the poison would be read without the protection, so none passes for want
of a `.env`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import chainlit_app
from handlers.core.settings import Settings, load_settings
from tests.hermetic import NO_ENV_FILE, SETTINGS_VARIABLES, app_environment, unset_variables

ROOT = Path(__file__).resolve().parents[1]
POISON = {
    "VLLM_MODEL": "poisoned-model",
    "MAX_MEDIA_MB": "1",
    "APP_DATABASE_URL": "postgresql://someone:secret@their-host/their-db",
    "CHAINLIT_AUTH_SECRET": "poisoned-secret",
    "OAUTH_GITHUB_CLIENT_ID": "poisoned-client",
}
# What a process reports: the settings it read and what Chainlit put into its environment.
REPORT = """
import json, os, sys
import chainlit
from handlers.core.settings import load_settings
settings = load_settings()
print(json.dumps({
    "vllm_model": settings.vllm_model,
    "max_media_mb": settings.max_media_mb,
    "database_url": settings.database_url,
    "environ": {name: os.environ.get(name) for name in sys.argv[1:]},
}))
"""


@pytest.fixture
def poisoned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch working directory holding a `.env` that sets every kind of variable."""
    (tmp_path / ".env").write_text("".join(f"{key}={value}\n" for key, value in POISON.items()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_load_settings_in_a_test_reads_no_env_file(poisoned: Path):
    assert load_settings() == Settings()
    assert load_settings(env_file=".env").vllm_model == "poisoned-model"  # it is there


async def test_the_app_started_in_a_test_reads_no_env_file(poisoned: Path, start_app):
    await start_app()
    settings = chainlit_app.services().settings
    assert settings.vllm_model is None and settings.max_media_mb == Settings().max_media_mb
    assert settings.database_url is None


def test_chainlit_was_first_imported_with_no_env_file():
    """tests/conftest.py points Chainlit's `.env` away before anything imports it."""
    import chainlit

    assert chainlit.env_file == NO_ENV_FILE


def test_the_variables_cleared_are_the_tables_and_those_others_read():
    environ = dict.fromkeys([*SETTINGS_VARIABLES, *POISON, "OPENAI_ORG_ID", "HOME"], "x")
    assert set(unset_variables(environ)) == {*SETTINGS_VARIABLES, *POISON, "OPENAI_ORG_ID"}
    assert not unset_variables(os.environ)  # inside a test, none is left


def report(env: dict[str, str], cwd: Path) -> dict:
    env = {**env, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", REPORT, *POISON], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_app_process_started_with_app_environment_reads_no_env_file(poisoned: Path):
    seen = report(app_environment(), poisoned)
    assert (seen["vllm_model"], seen["database_url"]) == (None, None)
    assert seen["max_media_mb"] == Settings().max_media_mb
    # The table's variables are set empty (which means the default), the others absent.
    assert seen["environ"] == {name: "" if name in SETTINGS_VARIABLES else None for name in POISON}


def test_without_app_environment_the_poison_would_reach_the_app(poisoned: Path):
    unprotected = {k: v for k, v in os.environ.items() if k != "CHAINLIT_ENV_FILE"}
    seen = report(unprotected, poisoned)
    assert seen["vllm_model"] == "poisoned-model"
    assert seen["environ"]["OAUTH_GITHUB_CLIENT_ID"] == "poisoned-client"  # loaded by Chainlit
