#!/usr/bin/env bash
# Regenerate the lock files scripts/_venv installs from (requirements/*.txt, with hashes):
#   tools/lock.sh             keep every pin that still satisfies pyproject.toml, add new ones
#   tools/lock.sh --upgrade   re-resolve everything to the newest releases
# Sets (both from pyproject.toml, plus requirements/build.in, the build backend):
#   dev.txt    runtime + demo + dev + servers + bench: scripts/test, scripts/bench, .ci/run
#   serve.txt  runtime + demo: scripts/permgate (the demo needs nothing more)
# serve.txt is resolved under dev.txt's pins, so both sets agree on every version. The
# resolver is uv at a pinned version (installed into .venv-lock/ on first use), resolving
# for every platform (--universal) and Python >= 3.11 against PyPI, so the output depends
# only on the inputs and the pins already in the files.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION=0.13.10
TOOL="$ROOT/.venv-lock"
upgrade=()
case "${1:-}" in
    "") ;;
    --upgrade) upgrade=(--upgrade) ;;
    *) echo "usage: tools/lock.sh [--upgrade]" >&2; exit 2 ;;
esac
if [ "$("$TOOL/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    "${PYTHON:-python3}" -m venv "$TOOL"
    "$TOOL/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
cd "$ROOT"
compile() {  # OUT, then uv's arguments
    local out="$1"; shift
    # Environment that would change the result (another index, a config file) is ignored.
    env -u UV_INDEX_URL -u UV_EXTRA_INDEX_URL -u UV_CONSTRAINT -u UV_OVERRIDE \
        UV_NO_CONFIG=1 "$TOOL/bin/uv" pip compile --quiet --universal --python-version 3.11 \
        --generate-hashes --index-url https://pypi.org/simple --index-strategy first-index \
        --custom-compile-command "tools/lock.sh" "${upgrade[@]}" \
        pyproject.toml requirements/build.in "$@" -o "$out"
}
compile requirements/dev.txt --extra dev --extra demo --extra servers --extra bench
compile requirements/serve.txt --extra demo --constraint requirements/dev.txt
echo "tools/lock.sh: wrote requirements/dev.txt and requirements/serve.txt" >&2
