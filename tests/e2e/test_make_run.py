"""What `make run` starts: within a minute the demo tenants' alerts are in Table storage;
with --webhook-receiver, local Teams and Slack webhooks the app's settings point at."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from shared.siem.cef import labelled, parse_cef
from shared.storage import tables
from shared.storage.connection import StorageConnection, azurite_connection_string
from shared.storage.tenants import TenantRepository
from tests.conftest import ROOT
from tests.e2e.app_copy import copy_app
from tests.e2e.test_devhost_cli import _alive, _free_port

DEMO_NAMES = ("soc-teams", "soc-slack")  # devtools/run.py DEMO_CHANNELS


def test_make_run_brings_up_everything_and_alerts_arrive(tmp_path):
    copy_app(tmp_path)
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AzureWebJobs", "DEVHOST_", "MSSP_", "FETCH_", "SIEM_"))}
    env["FETCH_SCHEDULE"] = "*/2 * * * * *"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.run", "--script-root", str(tmp_path), "--port",
         str(port), "--azurite-data", "-", "--rate", "2", "--syslog",
         "--webhook-receiver"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # read the output as it comes: a full pipe would block every thread that logs
    logged: list[str] = []
    reader = threading.Thread(target=lambda: logged.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        run_json = tmp_path / ".local" / "run.json"
        deadline = time.monotonic() + 60
        while not run_json.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        state = json.loads(run_json.read_text())
        assert len(state["tenants_seeded"]) >= 3
        hooks = state["webhooks"]
        posted = requests.post(f"{hooks}/slack/soc", json={"text": "hello"}, timeout=10)
        assert (posted.status_code, posted.text) == (200, "ok")
        assert "hello" in requests.get(f"{hooks}/", timeout=10).text
        health = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=10)
        assert health.status_code == 200, health.text
        storage = StorageConnection.from_env({"AzureWebJobsStorage": azurite_connection_string(
            blob=state["azurite"]["Blob"], queue=state["azurite"]["Queue"],
            table=state["azurite"]["Table"])}, "AzureWebJobsStorage")
        alerts = tables.table(storage, tables.ALERTS)

        def partitions() -> set[str]:
            return {e["PartitionKey"] for e in alerts.query_entities(
                "Version ne ''", select=["PartitionKey"])}

        deadline = time.monotonic() + 60
        while len(partitions()) < 3 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(partitions()) >= 3
        # --syslog: CEF lines of the demo tenants' alerts reach the local receiver
        received = tmp_path / ".local" / "syslog.log"
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not (
                received.exists() and received.read_text().count("CEF:0|") >= 3):
            time.sleep(1)
        cef_lines = received.read_text().splitlines()
        assert len(cef_lines) >= 3
        assert all(labelled(parse_cef(line)[1])["TenantName"] in state["tenants_seeded"]
                   for line in cef_lines)

        # the portal, signed in with the local key: demo tenants, and emails within a minute
        key = json.loads((tmp_path / "local.settings.json").read_text())["Values"]["PORTAL_KEY"]
        browser = requests.Session()
        overview = browser.get(f"{state['portal']}/login", params={"key": key}, timeout=30)
        assert overview.status_code == 200 and overview.url == state["portal"]
        assert all(name in overview.text for name in state["tenants_seeded"])
        outbox = tables.table(storage, "MailOutbox")
        deadline = time.monotonic() + 60
        while not any(True for _ in outbox.list_entities(results_per_page=1)) \
                and time.monotonic() < deadline:
            time.sleep(1)
        assert "soc@mssp.example" in browser.get(f"{state['portal']}/outbox", timeout=30).text
        # --webhook-receiver: the demo rule posts real alerts to Teams and Slack, each
        # valid for its platform, and a tenant page shows each channel's last result
        def alert_posts(platform: str) -> list[dict]:
            found = requests.get(f"{hooks}/_control/posts", timeout=10,
                                 params={"platform": platform, "hook": "soc"}).json()
            assert all(p["accepted"] for p in found), [p["reasons"] for p in found]
            return [p for p in found if p["body"] != {"text": "hello"}]

        deadline = time.monotonic() + 60
        while not (alert_posts("teams") and alert_posts("slack")) \
                and time.monotonic() < deadline:
            time.sleep(1)
        card = alert_posts("teams")[0]["body"]["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert any(name in json.dumps(alert_posts("slack")[0]["body"])
                   for name in state["tenants_seeded"])
        tenant = next(TenantRepository(tables.table(storage, tables.TENANTS)).all())
        sent = [re.compile(rf'data-channel="{name}">[^<]*<span[^>]*>\(\w+\)</span>:'
                           rf'\s*<span class="muted">sent</span>') for name in DEMO_NAMES]

        deadline = time.monotonic() + 20  # the last result is written after the post
        while True:
            page = browser.get(f"{state['portal']}/tenants/{tenant.tenant_id}",
                               timeout=30).text
            if all(r.search(page) for r in sent) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert all(r.search(page) for r in sent), page[-3000:]
        assert hooks not in page  # never the webhook's URL
        azurite_pid = state["azurite_pid"]
    except BaseException:
        proc.send_signal(signal.SIGTERM)  # it stops its Azurite; a kill would orphan it
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        reader.join(10)
        print("".join(logged)[-6000:])  # shown by pytest with the failure
        raise
    proc.send_signal(signal.SIGTERM)  # as an operator would
    try:
        proc.wait(90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("make run did not stop on SIGTERM within 90 s") from None
    reader.join(10)
    output = "".join(logged)
    assert proc.returncode == 0, output[-3000:]
    assert "mssp-hub is running" in output
    assert f"/api/portal/login?key={key}" in output
    assert not _alive(azurite_pid)
    assert f"SLACK_WEBHOOK_SOC={hooks}/slack/soc" in output
    assert f"TEAMS_WEBHOOK_SOC={hooks}/teams/soc" in output
    with pytest.raises(requests.ConnectionError):  # stopped with the rest
        requests.get(f"{hooks}/", timeout=5)
