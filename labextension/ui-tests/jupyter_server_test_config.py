"""Jupyter server configuration for the browser test (see run.sh).

Token auth on 127.0.0.1; with NEO_MOCK=1 the fake REST API in mock_server/
replaces the real jupyter-neo server extension and the freshly built
labextension is loaded from NEO_LABEXTENSIONS.
"""

import os

c = get_config()  # type: ignore[name-defined]  # noqa: F821

c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = int(os.environ.get("NEO_LAB_PORT", "8899"))
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.allow_root = True
c.IdentityProvider.token = os.environ.get("NEO_LAB_TOKEN", "neotest")
c.ServerApp.root_dir = os.environ["NEO_ROOT_DIR"]
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"

if os.environ.get("NEO_MOCK") == "1":
    # The mock replaces the real extension (both register the change/v1 event schema).
    c.ServerApp.jpserver_extensions = {"neo_mock_server": True, "jupyter_neo": False}
    c.LabApp.extra_labextensions_path = [os.environ["NEO_LABEXTENSIONS"]]
