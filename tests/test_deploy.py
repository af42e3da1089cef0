"""The deploy files are code: the units parse, agree with the app's settings and
with each other, keep the secret out of sight, and every setting is explained
in deploy/README.md.

Three checks use outside tools and skip, saying why, where they are missing:
`systemd-analyze` (verify and security), `nginx -t`, and vLLM's own argument
parser (`pip install -r deploy/requirements-vllm.txt` in a separate venv; the
command is in deploy/README.md, "Checking the deploy files").
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from handlers.core.settings import DEFAULT_MODEL, Settings, load_settings, variables

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
README = (DEPLOY / "README.md").read_text()
DEFAULTS = Settings()


# --- reading the files ------------------------------------------------------


def read_unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}}: continuation lines joined, comments dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in _logical_lines((DEPLOY / name).read_text()):
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _logical_lines(text: str) -> list[str]:
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return lines


def one(unit: dict, key: str, section: str = "Service") -> str:
    [value] = unit[section][key]
    return value


def environment(unit: dict) -> dict[str, str]:
    pairs = (
        item.split("=", 1)
        for value in unit["Service"].get("Environment", [])
        for item in shlex.split(value)
    )
    return dict(pairs)


def exec_argv(unit: dict) -> list[str]:
    """ExecStart= split as systemd does (quotes like a shell; no variables used here)."""
    return shlex.split(one(unit, "ExecStart"))


def flags(argv: list[str]) -> dict[str, str | None]:
    """--flag value pairs (a flag followed by another flag has the value None)."""
    found: dict[str, str | None] = {}
    for index, arg in enumerate(argv):
        if arg.startswith("--"):
            following = argv[index + 1] if index + 1 < len(argv) else None
            found[arg] = None if following is None or following.startswith("--") else following
    return found


VLLM = read_unit("vllm.service")
APP = read_unit("visual-assistant.service")
VLLM_ARGV = exec_argv(VLLM)
VLLM_FLAGS = flags(VLLM_ARGV)
APP_ENV_EXAMPLE = load_settings({}, env_file=DEPLOY / "app.env.example")


def nginx_active_text() -> str:
    return "\n".join(
        line.split("#", 1)[0] for line in (DEPLOY / "nginx.conf.example").read_text().splitlines()
    )


# --- vllm.service -----------------------------------------------------------


def test_vllm_serves_pixtral_in_mistral_format_on_two_gpus():
    assert VLLM_ARGV[1:3] == ["serve", DEFAULT_MODEL]
    assert VLLM_FLAGS["--tensor-parallel-size"] == "2"
    for flag in ("--tokenizer-mode", "--config-format", "--load-format"):
        assert VLLM_FLAGS[flag] == "mistral", flag
    assert 0.5 <= float(VLLM_FLAGS["--gpu-memory-utilization"]) <= 0.95


def test_vllm_limits_match_the_app_defaults_and_the_example_env():
    limit = json.loads(VLLM_FLAGS["--limit-mm-per-prompt"])  # JSON, not the old image=4
    assert limit == {"image": DEFAULTS.max_images_per_request}
    assert limit == {"image": APP_ENV_EXAMPLE.max_images_per_request}
    assert (
        int(VLLM_FLAGS["--max-model-len"])
        == DEFAULTS.max_model_len
        == APP_ENV_EXAMPLE.max_model_len
    )
    # It is also the vision encoder's budget per step: at least one 1024x1024 image (4160 tokens).
    assert int(VLLM_FLAGS["--max-num-batched-tokens"]) >= 4160


def test_vllm_listens_where_the_app_looks():
    assert VLLM_FLAGS["--host"] == "127.0.0.1"
    expected = f"http://127.0.0.1:{VLLM_FLAGS['--port']}/v1"
    assert DEFAULTS.vllm_base_urls == APP_ENV_EXAMPLE.vllm_base_urls == (expected,)
    assert APP_ENV_EXAMPLE.vllm_model == DEFAULT_MODEL


def test_the_api_key_comes_only_from_the_environment_file():
    assert "--api-key" not in VLLM_ARGV
    assert "VLLM_API_KEY" not in environment(VLLM)
    assert one(VLLM, "EnvironmentFile") == "/etc/visual-assistant/vllm.env"
    assert re.search(r"^VLLM_API_KEY=\S+", (DEPLOY / "vllm.env.example").read_text(), re.M)


def test_vllm_is_ready_only_when_health_answers():
    assert one(VLLM, "Type") != "notify"  # vLLM never calls sd_notify
    post = one(VLLM, "ExecStartPost")
    assert f"http://127.0.0.1:{VLLM_FLAGS['--port']}/health" in post and "until" in post
    assert _seconds(one(VLLM, "TimeoutStartSec")) >= 15 * 60  # 25 GB from disk, then CUDA graphs
    assert "vllm.service" in one(APP, "After", "Unit").split()
    assert "vllm.service" in one(APP, "Wants", "Unit").split()


def test_vllm_stops_gracefully_before_systemd_kills_it():
    assert one(VLLM, "KillSignal") == "SIGINT"
    assert one(VLLM, "KillMode") == "mixed"
    assert int(VLLM_FLAGS["--shutdown-timeout"]) + 30 <= _seconds(one(VLLM, "TimeoutStopSec"))
    assert one(VLLM, "Restart") == "on-failure"


def test_vllm_loads_the_model_offline_from_its_state_directory():
    env = environment(VLLM)
    state = "/var/lib/" + one(VLLM, "StateDirectory")
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_HOME"].startswith(state + "/") and env["HOME"] == state
    assert state in one(VLLM, "ReadWritePaths").split()


def test_vllm_hardening_leaves_the_gpus_and_shared_memory_reachable():
    service = VLLM["Service"]
    assert one(VLLM, "ProtectSystem") == "strict"  # /dev (and /dev/shm for NCCL) stays writable
    assert "PrivateDevices" not in service and "PrivateIPC" not in service
    assert "MemoryDenyWriteExecute" not in service  # CUDA and Triton JIT need W+X memory
    assert one(VLLM, "DevicePolicy") == "closed"
    assert {"char-nvidia-frontend rw", "char-nvidia-uvm rw"} <= set(service["DeviceAllow"])
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables"):
        assert one(VLLM, key) == "yes", key
    assert "AF_NETLINK" in one(VLLM, "RestrictAddressFamilies").split()


def test_vllm_talks_only_to_this_host():
    assert one(VLLM, "IPAddressDeny") == "any"
    assert one(VLLM, "IPAddressAllow") == "localhost"
    assert VLLM_FLAGS["--host"] == "127.0.0.1"


@pytest.mark.parametrize("unit", [VLLM, APP], ids=["vllm", "app"])
def test_both_services_have_memory_and_thread_ceilings(unit):
    assert re.fullmatch(r"\d+G", one(unit, "MemoryMax"))
    assert int(one(unit, "TasksMax")) >= 256


def test_the_nccl_fallback_is_there_but_off():
    text = (DEPLOY / "vllm.service").read_text()
    assert re.search(r"^#Environment=NCCL_P2P_DISABLE=1$", text, re.M)
    assert "NCCL_P2P_DISABLE" not in environment(VLLM)


# --- visual-assistant.service -----------------------------------------------


def test_the_app_runs_chainlit_from_its_checkout():
    workdir = one(APP, "WorkingDirectory")
    argv = exec_argv(APP)
    assert argv[0] == f"{workdir}/.venv/bin/chainlit"
    assert argv[1:] == [
        "run",
        "chainlit_app.py",
        "--host",
        "127.0.0.1",
        "--port",
        "8001",
        "--headless",
    ]
    assert (ROOT / "chainlit_app.py").is_file()


def test_the_read_only_checkout_has_everything_chainlit_would_otherwise_write():
    """Chainlit writes a default config, chainlit.md and any missing translation
    into its working directory at start-up; under ProtectSystem=strict that fails."""
    assert (ROOT / ".chainlit" / "config.toml").is_file() and (ROOT / "chainlit.md").is_file()
    bundled = (
        Path(importlib.util.find_spec("chainlit").submodule_search_locations[0]) / "translations"
    )
    missing = {p.name for p in bundled.glob("*.json")} - {
        p.name for p in (ROOT / ".chainlit/translations").glob("*.json")
    }
    assert not missing, f"run `chainlit init` and commit .chainlit/translations: {sorted(missing)}"


def test_the_app_keeps_data_and_uploads_outside_the_checkout():
    workdir, env = one(APP, "WorkingDirectory"), environment(APP)
    assert env["DATA_DIR"] == "/var/lib/" + one(APP, "StateDirectory")
    source, target = one(APP, "BindPaths").split(":")
    assert source == "/var/cache/" + one(APP, "CacheDirectory") and target == f"{workdir}/.files"
    assert one(APP, "ProtectSystem") == "strict" and one(APP, "PrivateDevices") == "yes"


def test_the_app_reads_only_its_own_names():
    """Chainlit's DATABASE_URL switches on its own data layer; OPENAI_* are ignored."""
    assert one(APP, "EnvironmentFile") == "/etc/visual-assistant/app.env"
    example = (DEPLOY / "app.env.example").read_text()
    assigned = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", example, re.M))
    assert "DATABASE_URL" not in assigned | set(environment(APP))
    read_by_settings = {variable.name for variable in variables()}
    assert assigned - read_by_settings == {"CHAINLIT_AUTH_SECRET"}
    assert "DATA_DIR" not in assigned  # the unit sets it to the state directory


def test_vllm_stays_out_of_the_app_install():
    assert (DEPLOY / "requirements-vllm.txt").read_text().count("vllm==0.33.0") == 1
    assert not re.search(r"^vllm\b", (ROOT / "requirements.txt").read_text(), re.M)


# --- README: every setting explained ----------------------------------------


@pytest.mark.parametrize("name", ["vllm.service", "visual-assistant.service"])
def test_every_unit_setting_is_explained_in_the_readme(name):
    keys = {key for section in read_unit(name).values() for key in section}
    assert not {key for key in keys if f"`{key}=" not in README}


def test_every_vllm_flag_and_variable_is_explained_in_the_readme():
    assert not {flag for flag in VLLM_FLAGS if f"`{flag}" not in README}
    variables = {*environment(VLLM), *environment(APP), "NCCL_P2P_DISABLE"}
    assert not {
        name
        for name in variables
        if f"`Environment={name}=" not in README and f"`{name}" not in README
    }


def test_every_nginx_directive_is_explained_in_the_readme():
    directives = set(re.findall(r"^\s*([a-z_0-9]+)\s", nginx_active_text(), re.M)) - {"default"}
    assert not {d for d in directives if f"`{d}" not in README}


# --- nginx ------------------------------------------------------------------


def test_nginx_upload_limit_fits_the_largest_file_the_app_takes():
    [size] = re.findall(r"^\s*client_max_body_size\s+(\d+)m;", nginx_active_text(), re.M)
    chainlit = tomllib.loads((ROOT / ".chainlit/config.toml").read_text())
    max_size_mb = chainlit["features"]["spontaneous_file_upload"]["max_size_mb"]
    largest = max(DEFAULTS.max_upload_mb, DEFAULTS.max_media_mb)  # photos; videos and PDFs
    assert DEFAULTS.max_upload_mb == APP_ENV_EXAMPLE.max_upload_mb
    assert largest == max_size_mb
    assert largest < int(size) <= largest + 2


def test_nginx_passes_the_websocket_and_streams_unbuffered():
    text = nginx_active_text()
    assert re.search(r"location /ws/socket\.io \{[^}]*proxy_read_timeout\s+1h;", text)
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade;", text)
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", text)
    assert re.search(r"^\s*proxy_buffering off;", text, re.M)
    assert "proxy_pass http://127.0.0.1:8001" in text or "server 127.0.0.1:8001;" in text


def test_nginx_overwrites_the_trusted_header_and_limits_sign_ins():
    text = nginx_active_text()
    assert re.search(r"^\s*proxy_set_header\s+X-Forwarded-User\s+\$remote_user;", text, re.M)
    assert APP_ENV_EXAMPLE.cookie_secure is True  # behind nginx's TLS
    login = re.search(r"location = /login \{([^}]*)\}", text).group(1)
    assert "zone=visual_assistant_login" in login and "zone=visual_assistant_requests" in login
    assert "proxy_pass http://visual_assistant;" in login
    assert re.search(
        r"limit_req_zone \$visual_assistant_login_key zone=visual_assistant_login:\S+ rate=\d+r/m;",
        text,
    )
    assert re.search(r"^\s*limit_conn visual_assistant_connections \d+;", text, re.M)
    assert re.search(r"^\s*limit_req_status\s+429;", text, re.M)
    signing_in = _proxy_sign_in(DEPLOY.joinpath("nginx.conf.example").read_text())
    assert re.search(r'^\s*proxy_set_header\s+X-Auth-Proxy-Secret\s+"', signing_in, re.M)
    assert re.search(r"^\s*auth_basic\s", signing_in, re.M)


@pytest.mark.parametrize(
    "variant", ["as shipped", "scale-out block uncommented", "proxy sign-in uncommented"]
)
def test_nginx_accepts_the_example(variant, tmp_path):
    if not shutil.which("nginx") or not shutil.which("openssl"):
        pytest.skip("nginx or openssl is not installed here (apt-get install nginx openssl)")
    site = (DEPLOY / "nginx.conf.example").read_text()
    if variant == "scale-out block uncommented":
        site = _scale_out(site)
    elif variant == "proxy sign-in uncommented":
        site = _proxy_sign_in(site)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )
    site = site.replace("/etc/ssl/visual-assistant/fullchain.pem", str(cert))
    site = site.replace("/etc/ssl/visual-assistant/privkey.pem", str(key))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp_path};\n include {tmp_path}/site.conf;\n}}\n"
    )
    done = subprocess.run(
        ["nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "[warn]" not in done.stderr, done.stderr


def _scale_out(site: str) -> str:
    """The example with its scale-out block switched on, the way its comment says."""
    site = re.sub(r"^upstream visual_assistant \{.*?^\}\n", "", site, count=1, flags=re.M | re.S)
    begin, end = site.index("# BEGIN scale-out"), site.index("# END scale-out")
    block = [
        line[2:] if line.startswith("# ") else line for line in site[begin:end].splitlines()[2:]
    ]
    return site[:begin] + "\n".join(block) + "\n" + site[end:]


def _proxy_sign_in(site: str) -> str:
    """The example with its proxy sign-in block switched on, the way its comment says."""
    begin, end = site.index("# BEGIN proxy sign-in"), site.index("# END proxy sign-in")
    lines = site[begin:end].splitlines()
    switched = [
        re.sub(r"^(\s*)# ", r"\1", line) if re.match(r"\s*# (auth_|proxy_)", line) else line
        for line in lines
    ]
    return site[:begin] + "\n".join(switched) + "\n" + site[end:]


# --- outside tools ----------------------------------------------------------


def _stubbed_units(tmp_path: Path) -> list[Path]:
    """The units with their programs swapped for a stub: verify checks every
    ExecStart program exists, and the venvs exist only on the servers."""
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    units = []
    for name in ("vllm.service", "visual-assistant.service"):
        text = (DEPLOY / name).read_text()
        text = re.sub(r"/opt/\S+/bin/(vllm|chainlit)", str(stub), text)
        units.append(tmp_path / name)
        units[-1].write_text(text)
    return units


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if not path:
        pytest.skip("systemd-analyze is not installed here (it comes with systemd)")
    return path


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    done = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", *map(str, _stubbed_units(tmp_path))],
        capture_output=True,
        text=True,
    )
    # Unknown keys and unparsable values are only warnings (exit 0): any output is a failure.
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        done.stdout + done.stderr
    )


def test_systemd_analyze_security_rates_the_units_well_hardened(tmp_path):
    analyze = _systemd_analyze()
    for unit in _stubbed_units(tmp_path):
        done = subprocess.run(
            [analyze, "security", "--offline=true", "--no-pager", str(unit)],
            capture_output=True,
            text=True,
        )
        if "--offline" in done.stderr:
            pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
        [exposure] = re.findall(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
        assert float(exposure) <= 3.0, f"{unit.name}: {exposure}\n{done.stdout}"


def _vllm_parser():
    """vLLM's own `vllm serve` parser, or a skip saying how to get it."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip(
            "vllm is not installed in this venv (it is 9.4 GB); run the command in "
            "deploy/README.md, 'Checking the deploy files', to check the flags against vllm 0.33.0"
        )
    version = importlib.metadata.version("vllm")
    assert version == "0.33.0", (
        f"installed vllm {version}, but deploy/requirements-vllm.txt pins 0.33.0"
    )
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())

    def parse(argv: list[str]):
        args = parser.parse_args(argv)
        args.model = args.model_tag
        return args, AsyncEngineArgs.from_cli_args(args)

    return parse


@pytest.mark.filterwarnings("ignore")  # vLLM's own import-time warnings are not ours
def test_vllm_accepts_the_unit_flags(monkeypatch):
    monkeypatch.setenv("VLLM_TARGET_DEVICE", "cpu")
    parse = _vllm_parser()
    args, engine = parse(VLLM_ARGV[2:])
    assert engine.model == DEFAULT_MODEL and engine.tensor_parallel_size == 2
    assert engine.limit_mm_per_prompt == {"image": DEFAULTS.max_images_per_request}
    assert engine.max_model_len == DEFAULTS.max_model_len and engine.max_num_batched_tokens == 16384
    assert (engine.tokenizer_mode, engine.config_format, engine.load_format) == ("mistral",) * 3
    assert (args.host, args.port, args.api_key) == ("127.0.0.1", 8000, None)
    with pytest.raises(SystemExit):  # the pre-0.33 form no longer parses
        parse([DEFAULT_MODEL, "--limit-mm-per-prompt", "image=4"])


@pytest.mark.filterwarnings("ignore")
def test_vllm_accepts_the_scale_out_commands_in_the_readme(monkeypatch):
    monkeypatch.setenv("VLLM_TARGET_DEVICE", "cpu")
    parse = _vllm_parser()
    _, unit = parse(VLLM_ARGV[2:])
    commands = _readme_vllm_commands()
    assert len(commands) == 4
    for argv in commands:
        args, engine = parse(argv)
        assert engine.data_parallel_size == 2 and engine.data_parallel_address == "10.0.0.21"
        for same in (
            "model",
            "tensor_parallel_size",
            "limit_mm_per_prompt",
            "max_model_len",
            "tokenizer_mode",
        ):
            assert getattr(engine, same) == getattr(unit, same), (same, argv)


def _readme_vllm_commands() -> list[list[str]]:
    """Each `vllm serve ...` command in the README's code blocks, as an argument list (after `serve`)."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README, re.M | re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [
        shlex.split(line.split("vllm serve ", 1)[1]) for line in lines if "bin/vllm serve " in line
    ]


def _seconds(value: str) -> int:
    """A systemd time span such as 30min, 120s or 90 (seconds)."""
    units = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0
    for number, unit in re.findall(r"(\d+)\s*([a-z]*)", value):
        total += int(number) * units[unit or "s"]
    return total
