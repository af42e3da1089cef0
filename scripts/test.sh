#!/usr/bin/env bash
# Set up (if needed) and run every test. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh -r requirements-dev.txt

# The browser tests (tests/e2e) drive Debian's Chromium (Playwright cannot
# download its own browser here) and need a CJK font to show Chinese.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg-query -W -f='${Status}' fonts-wqy-microhei 2>/dev/null | grep -q "ok installed" || missing+=(fonts-wqy-microhei)
if [ ${#missing[@]} -gt 0 ]; then
    log="$(mktemp)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "Could not install ${missing[*]} (the browser tests need them; run as root)." >&2
        exit 1
    fi
    rm -f "$log"
fi

exec .venv/bin/python -m pytest "$@"
