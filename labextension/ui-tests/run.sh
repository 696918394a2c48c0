#!/usr/bin/env bash
# Browser test of the jupyter-neo sidebar.
#
# Starts `jupyter lab` on 127.0.0.1 with a token, runs tests/*.test.js with
# node:test (playwright-core driving Debian's /usr/bin/chromium, never a
# downloaded browser), saves screenshots and the server log to
# $NEO_ARTIFACTS (default ./test-artifacts), then stops the server.
#
#   ./run.sh              against the installed jupyter-neo server extension
#   NEO_MOCK=1 ./run.sh   against mock_server/ and ../../jupyter_neo/labextension
#
# Environment: JUPYTER (jupyter executable), NEO_LAB_PORT (8899),
# NEO_LAB_TOKEN (neotest), CHROMIUM (/usr/bin/chromium), NEO_TEST_GPUS (2),
# NEO_TEST_NODES (2), NEO_TEST_CLUSTER (cheapest), NEO_READY_TIMEOUT_S (180),
# NEO_THEME (light | dark).
set -euo pipefail
cd "$(dirname "$0")"

export NEO_LAB_PORT=${NEO_LAB_PORT:-8899}
export NEO_LAB_TOKEN=${NEO_LAB_TOKEN:-neotest}
export NEO_ARTIFACTS=${NEO_ARTIFACTS:-$PWD/test-artifacts}
export NEO_LAB_URL="http://127.0.0.1:$NEO_LAB_PORT"
JUPYTER=${JUPYTER:-jupyter}

work=$(mktemp -d)
mkdir -p "$NEO_ARTIFACTS" "$work/root" "$work/workspaces" \
  "$work/settings/@jupyterlab/apputils-extension"
# No news/update toast in the screenshots; a fresh workspace every time.
echo '{"fetchNews": "false", "checkForUpdates": false}' \
  > "$work/settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
if [ "${NEO_THEME:-light}" = dark ]; then
  echo '{"theme": "JupyterLab Dark"}' \
    > "$work/settings/@jupyterlab/apputils-extension/themes.jupyterlab-settings"
fi
export NEO_ROOT_DIR="$work/root" NEO_NOTEBOOK_DIR="$work/root"
export JUPYTERLAB_SETTINGS_DIR="$work/settings"
export JUPYTERLAB_WORKSPACES_DIR="$work/workspaces"

if [ "${NEO_MOCK:-0}" != 1 ] && [ -z "${NEO_CLI:-}" ] && command -v neo >/dev/null; then
  # Start a run from outside the browser with the same NEO_HOME as the server.
  export NEO_CLI=$(command -v neo) NEO_WORKSPACE="$work/root"
fi

if [ "${NEO_MOCK:-0}" = 1 ]; then
  built=$(cd ../../jupyter_neo/labextension && pwd)
  mkdir -p "$work/labextensions"
  ln -s "$built" "$work/labextensions/jupyter-neo"
  export NEO_LABEXTENSIONS="$work/labextensions"
  export PYTHONPATH="$PWD/mock_server${PYTHONPATH:+:$PYTHONPATH}"
fi

"$JUPYTER" lab --config="$PWD/jupyter_server_test_config.py" \
  > "$NEO_ARTIFACTS/jupyter-lab.log" 2>&1 &
lab=$!
cleanup() {
  kill "$lab" 2>/dev/null || true
  wait "$lab" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Wait for the server; fail fast, with its log, if it dies.
for _ in $(seq 1 180); do
  if ! kill -0 "$lab" 2>/dev/null; then
    echo "jupyter lab exited; last lines of $NEO_ARTIFACTS/jupyter-lab.log:" >&2
    tail -n 30 "$NEO_ARTIFACTS/jupyter-lab.log" >&2
    exit 1
  fi
  if node -e "fetch(process.argv[1], {headers: {Authorization: 'token ' + process.argv[2]}})
      .then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))" \
      "$NEO_LAB_URL/api/status" "$NEO_LAB_TOKEN"; then
    break
  fi
  sleep 0.5
done

# One file at a time: they share the server (the sidebar test releases everything at its end).
# The notebook test needs a kernel with jupyter-neo against the real extension: not with the mock.
specs="tests/sidebar.test.js"
[ "${NEO_MOCK:-0}" = 1 ] || specs="$specs tests/notebook.test.js"
for spec in $specs; do
  node --test --test-reporter=spec "$spec"
done
