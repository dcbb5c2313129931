"""Cluster emails on the in-memory repositories: the `clusters` option on MSSP-wide rules
only (a tenant's rule asking for it is refused, naming the field), matching (new, grew,
tenants, severities), one email per (rule, cluster version) however often the event
comes, a `grew` email naming who joined, hostile text escaped, the portal form."""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest

from shared.messages import queue_events
from shared.notify.clusters import cluster_link, cluster_matches
from shared.notify.rules import GLOBAL, parse_rule
from shared.notify.service import Notifier
from shared.validation import ValidationError
from tests.cluster_events import HOSTILE_URL, TENANTS, cluster_event
from tests.helpers import settings as make_settings
from tests.unit.test_notifier import TENANT, FakeTransport, memory_stores


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def notifier(transport) -> Notifier:
    return Notifier(make_settings(MAIL_FROM="alerts@mssp.example", MSSP_NAME="Contoso MSSP",
                                  PUBLIC_BASE_URL="https://hub.mssp.example"),
                    transport, memory_stores())


def _rule(notifier, scope: str = GLOBAL, **fields):
    body = {"name": "campaigns", "recipients": ["soc@mssp.example"], "on_new": False,
            **fields}
    return notifier.rules.save(parse_rule(body, scope))


def test_a_tenant_rule_asking_for_clusters_is_refused_naming_the_field():
    for option in ("new", "new_or_grew"):
        with pytest.raises(ValidationError) as refused:
            parse_rule({"name": "c", "recipients": ["a@customer.example"],
                        "clusters": option}, TENANT)
        assert [e["field"] for e in refused.value.errors] == ["clusters"]
    assert parse_rule({"name": "c", "recipients": ["a@customer.example"],
                       "clusters": "off"}, TENANT).clusters == "off"
    rule = parse_rule({"name": "c", "recipients": ["a@mssp.example"], "on_new": False,
                       "clusters": "new_or_grew"}, GLOBAL)  # a cluster-only rule
    assert rule.clusters == "new_or_grew"
    with pytest.raises(ValidationError):
        parse_rule({"name": "c", "recipients": ["a@mssp.example"], "clusters": "always"},
                   GLOBAL)


def test_matching_new_grew_tenants_and_severities(notifier):
    new, grew = cluster_event(), cluster_event(version=2, tenants=TENANTS)
    only_new = _rule(notifier, clusters="new")
    both = _rule(notifier, clusters="new_or_grew")
    assert cluster_matches(only_new, new) and not cluster_matches(only_new, grew)
    assert cluster_matches(both, new) and cluster_matches(both, grew)
    assert not cluster_matches(_rule(notifier, on_new=True), new)  # an alert rule
    # the rule's choice of tenants: it takes the cluster when it takes one of its tenants
    assert cluster_matches(_rule(notifier, clusters="new", tenants=[TENANTS[1]["id"]]), new)
    assert not cluster_matches(_rule(notifier, clusters="new", tenants=[TENANTS[2]["id"]]),
                               new)
    assert not cluster_matches(_rule(notifier, clusters="new", exclude_tenants=[
        t["id"] for t in TENANTS[:2]]), new)
    # severities: one of its alerts'; min_severity: its highest ("high" spelt as Graph does)
    assert cluster_matches(_rule(notifier, clusters="new", min_severity="High"), new)
    low = cluster_event(severities={"low": 2, "informational": 1})
    assert not cluster_matches(_rule(notifier, clusters="new", min_severity="Medium"), low)
    assert cluster_matches(_rule(notifier, clusters="new", severities=["Low"]), low)
    assert not cluster_matches(_rule(notifier, clusters="new", severities=["High"]), low)
    unknown = cluster_event(severities={"UnSpecified": 2})
    assert not cluster_matches(_rule(notifier, clusters="new", min_severity="Low"), unknown)
    disabled = _rule(notifier, clusters="new", enabled=False)
    assert not cluster_matches(disabled, new)


def test_one_email_per_rule_and_cluster_version_however_often_it_comes(notifier, transport):
    _rule(notifier, clusters="new_or_grew")
    _rule(notifier, clusters="new")
    _rule(notifier, TENANT, on_new=True)  # a tenant's alert rule: never a cluster
    new = cluster_event()
    for _ in range(3):  # redelivered: the ledger holds it to one email a rule
        notifier.handle_all(queue_events(new.to_message()))
    assert len(transport.sent) == 2
    grew = cluster_event(version=2, tenants=TENANTS)
    assert notifier.handle(grew).sent == 1  # only new_or_grew
    assert notifier.handle(grew).skipped == 1
    assert len(transport.sent) == 3
    subject = str(transport.sent[-1]["Subject"])
    assert "3 customers" in subject and "joined: Fabrikam" in subject
    text = transport.sent[-1].get_body(("plain",)).get_content()
    assert "Joined now: Fabrikam" in text
    # kept in the MSSP's own outbox partition, never a tenant's
    assert not notifier.outbox.recent(TENANTS[0]["id"])
    assert len(notifier.outbox.recent(GLOBAL)) == 3


def test_the_email_escapes_every_value_and_keeps_headers_one_line(notifier, transport):
    _rule(notifier, clusters="new")
    event = cluster_event()
    notifier.handle(event)
    (message,) = transport.sent
    subject = str(message["Subject"])
    assert "\n" not in subject and "\r" not in subject and message["Bcc"] is None
    assert subject.startswith("[High] seen at 2 customers: URL https://x/<script>")
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Contoso &lt;b&gt;Ltd&lt;/b&gt;" in html and "<b>Ltd" not in html
    text = message.get_body(("plain",)).get_content()
    assert HOSTILE_URL in text
    lines = text.splitlines()
    assert not any(line.startswith("Bcc:") for line in lines)  # the CRLF name is one line
    assert f"- Evil Bcc: x@attacker.example ({TENANTS[1]['id']}): 1 alert" in lines
    assert f"- Contoso <b>Ltd</b> ({TENANTS[0]['id']}): 3 alerts" in lines
    link = cluster_link("https://hub.mssp.example/api/portal", event.indicator_kind,
                        event.indicator)
    assert link == ("https://hub.mssp.example/api/portal/clusters/url?value="
                    + quote_plus(event.indicator))  # the portal's own link to the page
    assert link in text and f'href="{link}"' in html
    for shown in ("First seen:        2026-11-29T08:00:00.0000000Z",
                  "Last seen:         2026-11-30T09:30:00.0000000Z",
                  "Severities:        Medium 3, High 1", "Reach:             2 customers, 4"):
        assert shown in text


def test_without_names_or_links_the_rule_gets_ids_only(notifier, transport):
    _rule(notifier, clusters="new", include_org_name=False, include_portal_link=False)
    notifier.handle(cluster_event())
    text = transport.sent[0].get_body(("plain",)).get_content()
    assert "Contoso <b>" not in text and "Evil" not in text and "/clusters/" not in text
    assert TENANTS[0]["id"] in text


def test_a_failing_server_is_retried_and_sends_once(notifier, transport):
    from shared.notify.transport import Transient
    _rule(notifier, clusters="new")
    transport.down = True
    with pytest.raises(Transient):
        notifier.handle(cluster_event())
    transport.down = False
    assert notifier.handle(cluster_event()).sent == 1
    assert notifier.handle(cluster_event()).skipped == 1


def test_the_portal_form_shows_the_option_for_mssp_wide_rules_and_keeps_it():
    from shared.portal.rule_form import rule_from_form
    form = {"name": "c", "recipients": "a@mssp.example", "enabled": "yes",
            "clusters_shown": "yes", "clusters": "new_or_grew"}
    rule = rule_from_form(form, GLOBAL)
    assert rule.clusters == "new_or_grew" and not rule.on_new
    assert rule_from_form({**form, "clusters_shown": ""}, GLOBAL, existing=rule
                          ).clusters == "new_or_grew"  # a form without it keeps it
    with pytest.raises(ValidationError) as refused:
        rule_from_form({**form, "on_new": "yes"}, TENANT)
    assert "clusters" in str(refused.value)


def test_the_rule_form_offers_clusters_on_mssp_wide_rules_only():
    from shared.web import pages
    form = pages._ENV.from_string(
        '{% from "portal/macros.html" import rule_form %}'
        '{{ rule_form("/x", "csrf", "back", "p", ["High"], rule=rule) }}')
    wide = parse_rule({"name": "c", "recipients": ["a@mssp.example"],
                       "clusters": "new_or_grew"}, GLOBAL)
    shown = form.render(rule=wide, alert_products=[])
    assert 'name="clusters"' in shown and '"new_or_grew" selected' in shown
    own = parse_rule({"name": "c", "recipients": ["a@mssp.example"]}, TENANT)
    assert 'name="clusters"' not in form.render(rule=own, alert_products=[])
    assert 'name="clusters"' not in form.render(rule=None, alert_products=[])
