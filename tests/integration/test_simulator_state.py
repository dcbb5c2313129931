"""The simulator's world on disk (`make run` restarted keeps its tenants, consents, alerts
and clock), and its consent pages on plain HTTP for a real browser."""

from __future__ import annotations

import json
import time

import requests

from devtools.simulator.server import Simulator, SimulatorConfig, demo_tenant_id
from tests.integration.sim_helpers import token


def _simulator(tmp_path, **config) -> Simulator:
    return Simulator(SimulatorConfig(ca_path=tmp_path / "ca.pem",
                                     state_path=tmp_path / "world.json", **config)).start()


def test_a_restarted_simulator_keeps_tenants_consents_alerts_and_clock(tmp_path):
    first = _simulator(tmp_path)
    first.seed_demo()
    onboarded = first.world.find_tenant(demo_tenant_id("Tailspin Toys"))  # not consented
    assert not onboarded.consents
    first.world.grant(onboarded, first.app.client_id)  # as the consent page does
    contoso = first.world.find_tenant(demo_tenant_id("Contoso Ltd"))
    first.world.revoke(contoso, first.app.client_id)  # an admin removed the app
    first.world.clock.advance(3600)
    before = {t.id: sorted(t.alerts) for t in first.world.tenants.values()}
    last = first.world.clock.now_ticks()
    first.stop()
    assert json.loads((tmp_path / "world.json").read_text())["version"] == 1

    second = _simulator(tmp_path)
    try:
        assert second.restored
        second.seed_demo()  # what `make run` does at every start: changes nothing here
        tailspin = second.world.find_tenant(onboarded.id)
        assert second.app.client_id in tailspin.consents
        assert second.app.client_id not in second.world.find_tenant(contoso.id).consents
        assert {t.id: sorted(t.alerts) for t in second.world.tenants.values()} == before
        assert second.world.clock.now_ticks() > last  # never a time the app has seen
        assert second.world.clock.now() >= first.world.clock.now() - 1
        assert token(second, tailspin.id)  # the onboarded tenant still answers
        fresh = second.world.generate(tailspin, 1)[0]
        assert fresh["id"] not in before[tailspin.id]
    finally:
        second.stop()


def test_an_unreadable_state_file_starts_afresh(tmp_path):
    (tmp_path / "world.json").write_text("{not json")
    sim = _simulator(tmp_path)
    try:
        assert not sim.restored and len(sim.seed_demo()) == 5
    finally:
        sim.stop()


def test_the_consent_pages_are_on_plain_http_and_nothing_else_is(simulator, sim):
    tenant = sim.add_tenant("Plain Http Co", domain="plainhttp.example")
    base = simulator.browser_base_url
    assert base.startswith("http://127.0.0.1:")
    page = requests.get(f"{base}/plainhttp.example/oauth2/v2.0/authorize", timeout=10,
                        params={"client_id": simulator.config.client_id,
                                "redirect_uri": "https://mssp.example/api/consent/callback",
                                "response_type": "code", "scope": "openid", "state": "s"})
    assert page.status_code == 200 and "admin@plainhttp.example" in page.text
    for path in (f"/{tenant['id']}/oauth2/v2.0/token", f"/{tenant['id']}/discovery/v2.0/keys",
                 "/api/alerts", "/_sim/tenants"):
        assert requests.get(base + path, timeout=10).status_code in (404, 405), path


def test_a_consent_is_on_disk_at_once_not_at_the_next_save(tmp_path):
    sim = _simulator(tmp_path)
    try:
        tenant = sim.world.add_tenant("Quick Co")
        sim.world.grant(tenant, sim.app.client_id)
        path, deadline = tmp_path / "world.json", time.monotonic() + 2  # the interval is 5 s

        def consented() -> bool:
            try:
                saved = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                return False
            return any(t["id"] == tenant.id and t["consents"] for t in saved["tenants"])

        while not consented() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert consented()  # a kill -9 of `make run` now would not lose it
    finally:
        sim.stop()
