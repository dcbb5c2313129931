"""Notification emails through Microsoft Graph sendMail (the simulator plays Graph)."""

from __future__ import annotations

import uuid

import pytest

from shared.notify.rules import parse_rule
from shared.notify.service import transport_for
from shared.notify.transport import Transient
from shared.services import notifier_for
from tests.helpers import settings as make_settings
from tests.integration.ingest_fixtures import ingest_env
from tests.integration.test_notify import TITLE, _event


@pytest.fixture
def graph_notifier(simulator, sim, storage_env):
    env = ingest_env(simulator, storage_env, MAIL_TRANSPORT="graph",
                     MSSP_TENANT_ID=simulator.config.mssp_tenant_id,
                     GRAPH_BASE_URL=simulator.base_url,
                     MAIL_FROM="alerts@mssp.onmicrosoft.com")
    settings = make_settings(**env)
    sim.mail(clear=True)
    return notifier_for(settings, transport_for(settings))


def _rule(notifier, tenant: str, recipients: list[str]):
    return notifier.rules.save(parse_rule({"name": "graph", "recipients": recipients}, tenant))


def test_graph_sendmail_delivers_the_escaped_html(graph_notifier, sim):
    tenant = str(uuid.uuid4())
    _rule(graph_notifier, tenant, ["soc@mssp.example"])
    event = _event(tenant, severity="High", title=TITLE)
    assert graph_notifier.handle(event).sent == 1
    assert graph_notifier.handle(event).skipped == 1
    (sent,) = sim.mail()
    message = sent["message"]
    assert sent["from"] == "alerts@mssp.onmicrosoft.com"
    assert message["toRecipients"] == [{"emailAddress": {"address": "soc@mssp.example"}}]
    assert "\n" not in message["subject"] and message["subject"].startswith("[High]")
    assert message["body"]["contentType"] == "HTML"
    assert "&lt;script&gt;" in message["body"]["content"]
    assert "<script>" not in message["body"]["content"]


def test_graph_refusal_is_permanent_and_outage_is_retried(graph_notifier, sim, simulator):
    tenant = str(uuid.uuid4())
    _rule(graph_notifier, tenant, ["refused@customer.example"])
    assert graph_notifier.handle(_event(tenant)).refused == 1
    other = str(uuid.uuid4())
    _rule(graph_notifier, other, ["soc@mssp.example"])
    event = _event(other)
    sim.fault(simulator.config.mssp_tenant_id, "status", status=503)
    with pytest.raises(Transient):
        graph_notifier.handle(event)
    assert graph_notifier.handle(event).sent == 1
    assert len(sim.mail()) == 1
