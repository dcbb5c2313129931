"""`make run` stopped and started again on the same .local/: a tenant onboarded through
the consent flow stays active (the simulator kept its consent), with no false revocation;
the consent pages a browser opens are plain HTTP on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from html import unescape
from pathlib import Path

import requests

from devtools.simulator.server import demo_tenant_id
from tests.conftest import ROOT
from tests.e2e.app_copy import copy_app
from tests.e2e.test_devhost_cli import _free_port


class Run:
    """One `python -m devtools.run` on a script root, its output collected."""

    def __init__(self, root: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AzureWebJobs", "DEVHOST_", "MSSP_", "FETCH_", "SIEM_"))}
        env["FETCH_SCHEDULE"] = "*/2 * * * * *"
        self.root, self.logged = root, []
        (root / ".local" / "run.json").unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.run", "--script-root", str(root), "--port",
             str(port), "--rate", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=lambda: self.logged.extend(self.proc.stdout),
                                       daemon=True)
        self.reader.start()
        run_json = root / ".local" / "run.json"
        deadline = time.monotonic() + 90
        while not run_json.exists() and time.monotonic() < deadline \
                and self.proc.poll() is None:
            time.sleep(0.2)
        assert run_json.exists(), self.output()
        self.state = json.loads(run_json.read_text())

    def output(self) -> str:
        return "".join(self.logged)[-4000:]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # it stops its Azurite; a kill would orphan it
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.reader.join(10)


def _onboard(base: str, key: str, tenant_id: str) -> str:
    """Invite, press the button, accept on the simulator's page as the tenant's admin."""
    api = {"x-functions-key": key}
    invitation = requests.post(f"{base}/api/invitations", headers=api, timeout=10, json={
        "display_name": "Tailspin Toys", "contact_email": "it@tailspin.example"}).json()
    start = requests.post(invitation["link"], allow_redirects=False, timeout=10)
    consent_url = start.headers["Location"]
    assert consent_url.startswith("http://127.0.0.1:")  # no certificate for a browser
    page = requests.get(consent_url, timeout=10)
    fields = {unescape(m.group(1)): unescape(m.group(2)) for m in re.finditer(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)}
    action = re.search(r'<form method="post" action="([^"]+)">', page.text).group(1)
    origin = "/".join(consent_url.split("/")[:3])
    answer = requests.post(f"{origin}{action}", timeout=10, allow_redirects=False, data={
        **fields, "signed_in_tenant": tenant_id, "decision": "accept"})
    callback = requests.get(answer.headers["Location"], timeout=60)
    return callback.text


def _tenant(base: str, key: str, tenant_id: str) -> dict:
    r = requests.get(f"{base}/api/tenants/{tenant_id}", headers={"x-functions-key": key},
                     timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_restart_keeps_a_tenant_onboarded_by_consent_active(tmp_path):
    copy_app(tmp_path)
    port = _free_port()
    tailspin = demo_tenant_id("Tailspin Toys")  # a demo tenant that starts unconsented
    run = Run(tmp_path, port)
    try:
        values = json.loads((tmp_path / "local.settings.json").read_text())["Values"]
        key, base = values["DEVHOST_FUNCTION_KEY"], run.state["http"]
        assert "You are connected" in _onboard(base, key, tailspin)
        assert _tenant(base, key, tailspin)["status"] == "active"
    except BaseException:
        run.stop()
        print(run.output())
        raise
    run.stop()
    assert run.proc.returncode == 0, run.output()
    assert (tmp_path / ".local" / "simulator" / "world.json").exists()

    restarted_at = time.time()
    run = Run(tmp_path, port)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tenant = _tenant(base, key, tailspin)
            fetched = tenant["health"]["last_success_at"]
            if fetched and datetime.fromisoformat(fetched).timestamp() > restarted_at:
                break
            time.sleep(1)
        assert tenant["status"] == "active", tenant  # not consent_revoked
        assert fetched and datetime.fromisoformat(fetched).timestamp() > restarted_at, tenant
        assert tenant["health"]["consecutive_failures"] == 0
        notices = " ".join(run.logged)
        assert "consent_revoked" not in notices
    except BaseException:
        print(run.output())
        raise
    finally:
        run.stop()
