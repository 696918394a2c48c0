"""The JupyterLab sidebar in a real browser, against the real server extension and local backend.

Starts ``jupyter lab`` (as root too: ``--allow-root``) on 127.0.0.1, a free port and a token, with
the jupyter-neo server extension on the embedded local backend in a temporary ``NEO_HOME``, a
fresh workspace and user settings, and JupyterLab's news toast off (``overrides.json``). Then runs
``labextension/ui-tests/tests/*.test.js`` (node:test + playwright-core driving Debian's
``/usr/bin/chromium``, never a downloaded browser): open the panel, reserve 2 nodes through the
form, see the reservation ready, see a ``neo run`` started from outside the browser appear in the
Runs list, open a rank's log tail, release through the confirmation dialog, see it gone.
Screenshots and the server log go to ``test-artifacts/sidebar/``.

Without chromium this skips with the reason, except under ``CI`` (``make test`` installs it with
``make deps``), where a missing browser is a failure. ``NEO_DOCS_SCREENSHOT=docs/img/sidebar.png``
rewrites the README's screenshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UI_TESTS = ROOT / "labextension" / "ui-tests"
BUILT = ROOT / "jupyter_neo" / "labextension"
ARTIFACTS = ROOT / "test-artifacts" / "sidebar"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BIN = Path(sys.executable).parent
TOKEN = "neo-browser-test"
NO_NEWS = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}
LOCAL_CLUSTER = """\
clusters:
  - name: local
    backend: local
    region: local
    gpu_type: virtual
    nodes: 4
    gpus_per_node: 8
    price_per_gpu_hour: 2.49
"""

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2000)]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skip with the reason on a developer's machine; fail under CI, where everything must run."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so the browser test must run; `make test` installs it)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    url: str
    env: dict[str, str]
    workspace: Path
    log: Path
    root: Path

    def get(self, path: str) -> tuple[int, object]:
        request = urllib.request.Request(f"{self.url}/{path}", headers={"Authorization": f"token {TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def node_deps() -> None:
    """playwright-core for ui-tests (``make test`` installs it first; this covers a bare ``pytest``)."""
    if (UI_TESTS / "node_modules" / "playwright-core").is_dir():
        return
    jlpm = BIN / "jlpm"
    if not jlpm.exists():
        unavailable(f"no jlpm next to {sys.executable} to install the browser test's node modules")
    subprocess.run(
        [str(jlpm), "install", "--immutable"],
        cwd=UI_TESTS,
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium, or `make deps`)")
    if shutil.which("node") is None:
        unavailable("node is not installed")
    if not (BUILT / "static").is_dir():
        unavailable(f"the sidebar is not built ({BUILT}); pip install -e . or `jlpm build` in labextension/")
    node_deps()

    home, workspace, root = tmp_path / "neo-home", tmp_path / "workspace", tmp_path / "root"
    app_settings, user_settings = tmp_path / "app-settings", tmp_path / "user-settings"
    for d in (home, workspace, root, app_settings, user_settings):
        d.mkdir()
    (tmp_path / "neo.yaml").write_text(LOCAL_CLUSTER)
    # The news toast would cover the panel in screenshots; only overrides.json turns it off.
    (app_settings / "overrides.json").write_text(json.dumps(NO_NEWS))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    log = ARTIFACTS / "jupyter-lab.log"

    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "NEO_HOME": str(home),
        "NEO_CONFIG": str(tmp_path / "neo.yaml"),
        "NEO_OWNER": "browser-test",
        "JUPYTERLAB_SETTINGS_DIR": str(user_settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
    }
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--allow-root",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.app_settings_dir={app_settings}",
        "--LabApp.news_url=None",
        "--JupyterNeo.poll_interval=1",
    ]
    with log.open("w") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = Lab(f"http://127.0.0.1:{port}", env, workspace, log, root)
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                status, _ = lab.get("api/status")
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield lab
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        # Whatever the test left held: stop its pods' agents.
        subprocess.run(
            [str(BIN / "neo"), "release", "--all"], check=False, env=env, capture_output=True, timeout=60
        )


def test_labextension_is_installed() -> None:
    """``pip install`` put the built sidebar where JupyterLab finds it, enabled."""
    if not (BUILT / "static").is_dir():
        unavailable(f"the sidebar is not built ({BUILT})")
    out = subprocess.run(
        [str(BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True, check=True
    )
    text = out.stdout + out.stderr
    line = next((x for x in text.splitlines() if "jupyter-neo" in x), "")
    assert "jupyter-neo v0.1.0" in line and "enabled" in line and "OK" in line, text


def test_sidebar_in_chromium(lab: Lab) -> None:
    # The real server extension answers on the local backend before the browser starts.
    status, body = lab.get("jupyter-neo/clusters")
    assert status == 200, body
    assert isinstance(body, dict)
    assert [c["name"] for c in body["clusters"]] == ["local"]
    status, body = lab.get("lab/api/extensions")
    if status == 200 and isinstance(body, list):
        assert any(e.get("name") == "jupyter-neo" and e.get("enabled") for e in body), body

    env = {
        **lab.env,
        "NEO_LAB_URL": lab.url,
        "NEO_LAB_TOKEN": TOKEN,
        "NEO_ARTIFACTS": str(ARTIFACTS),
        "CHROMIUM": CHROMIUM,
        "NEO_CLI": str(BIN / "neo"),
        "NEO_WORKSPACE": str(lab.workspace),
        "NEO_TEST_CLUSTER": "local",
        "NEO_READY_TIMEOUT_S": "120",
        "NEO_NOTEBOOK_DIR": str(lab.root),
    }
    docs_shot = os.environ.get("NEO_DOCS_SCREENSHOT")
    if docs_shot:
        env["NEO_DOCS_SCREENSHOT"] = str((ROOT / docs_shot).resolve())
        env["NEO_DOCS_DIR"] = str((ROOT / docs_shot).resolve().parent)
    started = time.monotonic()
    # One file at a time, in this order: they share the server and its NEO_HOME (the sidebar test
    # releases everything at its end; the notebook test reserves its own gang).
    out = []
    specs = os.environ.get("NEO_UI_SPECS", "sidebar notebook").split()  # a subset, when debugging
    for spec in (f"tests/{name}.test.js" for name in specs):
        result = subprocess.run(
            ["node", "--test", "--test-reporter=spec", spec],
            cwd=UI_TESTS,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        out.append(result.stdout + result.stderr)
        (ARTIFACTS / "node-test.log").write_text("\n".join(out))
        assert result.returncode == 0, (
            f"{spec} failed after {time.monotonic() - started:.0f}s "
            f"(screenshots and logs in {ARTIFACTS}):\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}\n"
            f"--- jupyter lab log ---\n{lab.log.read_text()[-3000:]}"
        )
        assert re.search(r"\bfail 0\b", result.stdout), result.stdout
    if specs != ["sidebar", "notebook"]:
        return
    shots = sorted(p.name for p in ARTIFACTS.glob("*.png"))
    for name in (
        "panel",
        "price-preview",
        "ready",
        "run-logs",
        "confirm-release",
        "released",
        "nb-widget-running",
        "nb-widget-failed",
        "nb-widget-not-applied",
        "nb-sidebar-newest-first",
    ):
        assert any(name in s for s in shots), shots
