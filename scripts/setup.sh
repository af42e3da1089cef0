#!/usr/bin/env bash
# Create .venv with the app's packages, and a .env from .env.example if there is none.
# Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt "$@"

if [ ! -f .env ]; then
    (umask 077 && cp .env.example .env)
    echo "Created .env from .env.example — edit VLLM_BASE_URL and VLLM_API_KEY to point at your vLLM server."
fi
chmod 600 .env  # it holds the API key and the sign-in secret: the app's account only
# Sign-in tokens are signed with this secret: one per install, never checked in.
if [ -z "${CHAINLIT_AUTH_SECRET:-}" ] && ! grep -q '^CHAINLIT_AUTH_SECRET=..*' .env; then
    echo "CHAINLIT_AUTH_SECRET=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))')" >> .env
fi
