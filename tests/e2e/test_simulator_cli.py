"""`python -m devtools.simulator --demo`, as `make run` starts it."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.conftest import ROOT
from tests.e2e.test_devhost_cli import stop
from tests.integration.sim_helpers import DEFENDER_SCOPE


def test_simulator_process_serves_demo_tenants(tmp_path):
    import requests
    from azure.identity import ClientSecretCredential

    proc = subprocess.Popen([sys.executable, "-m", "devtools.simulator", "--state-dir",
                             str(tmp_path), "--demo", "--rate", "5"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        info_path = tmp_path / "simulator.json"
        deadline = time.monotonic() + 30
        while not info_path.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        info = json.loads(info_path.read_text())
        assert info_path.stat().st_mode & 0o077 == 0  # it holds the client secret
        consented = [t for t in info["tenants"] if t["consented"] and t["defender"] == "enabled"]
        assert len(consented) >= 3
        credential = ClientSecretCredential(
            consented[0]["id"], info["client_id"], info["client_secret"],
            authority=info["base_url"], disable_instance_discovery=True,
            connection_verify=info["ca_path"])
        bearer = credential.get_token(DEFENDER_SCOPE).token
        r = requests.get(f"{info['base_url']}/api/alerts", verify=info["ca_path"], timeout=10,
                         headers={"Authorization": f"Bearer {bearer}"})
        assert r.status_code == 200 and len(r.json()["value"]) > 0
    finally:
        out = stop(proc)
    assert proc.returncode == 0, out
