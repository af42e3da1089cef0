"""The PostgreSQL fixtures' rule for a missing server: skip on a laptop, fail in CI."""

from __future__ import annotations

import pytest

from tests.db_fixtures import scratch_postgres_database

NOBODY_LISTENS = "postgresql://postgres:hunter2@127.0.0.1:1/test"  # port 1: refused at once


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [
        (None, pytest.skip.Exception),
        ("false", pytest.skip.Exception),
        ("true", pytest.fail.Exception),
    ],
)
async def test_a_missing_server_skips_on_a_developers_machine_and_fails_in_ci(
    monkeypatch, ci, outcome
):
    monkeypatch.setenv("TEST_POSTGRES_URL", NOBODY_LISTENS)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(
        outcome, match=r"no PostgreSQL server at postgresql://postgres:\*\*\*@"
    ) as said:
        async with scratch_postgres_database():
            pass
    assert "hunter2" not in str(said.value)
