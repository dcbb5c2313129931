"""Clusters on Teams and Slack, on the in-memory repositories: an MSSP-wide rule with
`clusters` posts one card or Block Kit message per (rule, channel, cluster version) however
often the event comes, each one the platform takes (devtools/webhook_schemas), a `grew`
version naming who joined, hostile indicator text inert. And privacy (issue 22, item 7):
a tenant's rule with channels, email or digest never gets a cluster nor another tenant's
alert text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from devtools.webhook_schemas import slack_problems, teams_problems
from shared.messages import AlertEvent
from shared.notify.channels.cluster_posts import (
    MAX_LISTED,
    cluster_facts,
    slack_message,
    teams_card,
)
from shared.notify.clusters import cluster_link
from shared.notify.rules import GLOBAL, parse_rule
from tests.cluster_events import HOSTILE_URL, TENANTS, cluster_event
from tests.unit.test_channel_delivery import CHANNELS, SLACK_URL, TEAMS_URL, World

HOSTILE = ("<!channel> <@U024BE7LH> <at>Everyone</at> @here *bold* [x](https://evil.example)"
           " <script>alert(1)</script> javascript:alert(1) &amp;")
OTHER = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"


@pytest.fixture
def world() -> World:
    return World()


def _global_rule(world: World, recipients: list[str] | None = None, **fields):
    body = {"name": "campaigns", "recipients": ["soc@mssp.example"] if recipients is None
            else recipients, "channels": CHANNELS, "on_new": False,
            "clusters": "new_or_grew", **fields}
    return world.notifier.save_rule(parse_rule(body, GLOBAL, webhooks=world.webhooks))


def _teams_ok(card: dict) -> bool:
    return teams_problems(card, len(json.dumps(card).encode())) == []


def _slack_ok(message: dict) -> bool:
    return slack_problems(message) == ("", [])


def _texts(card: dict) -> list[str]:
    return [b.get("text", "") for b in card["attachments"][0]["content"]["body"]]


def test_one_post_per_channel_per_cluster_version_whatever_the_redeliveries(world):
    _global_rule(world)
    new = cluster_event()
    for _ in range(3):
        world.notifier.handle(new)
    assert sorted(world.work()) == ["duplicate"] * 4 + ["sent", "sent"]
    assert len(world.transport.sent) == 1  # and one email
    [card], [message] = world.poster.to(TEAMS_URL), world.poster.to(SLACK_URL)
    assert _teams_ok(card) and _slack_ok(message)
    assert _texts(card)[0] == "High · Seen at 2 customers"
    assert message["blocks"][0]["text"]["text"] == "🔴 Seen at 2 customers"
    urls = [a["url"] for a in card["attachments"][0]["content"]["actions"]]
    assert urls == [cluster_link(world.notifier.portal, "url", new.indicator)]
    grew = cluster_event(value=new.indicator, version=2, tenants=TENANTS)
    world.notifier.handle(grew)
    world.notifier.handle(grew)
    assert sorted(world.work()) == ["duplicate", "duplicate", "sent", "sent"]
    assert _texts(world.poster.to(TEAMS_URL)[1])[0] == (
        "High · Seen at 3 customers · joined: Fabrikam")
    assert "joined: Fabrikam" in world.poster.to(SLACK_URL)[1]["text"]
    assert len(world.transport.sent) == 2


def test_new_only_rules_skip_grew_and_a_channel_only_rule_sends_no_email(world):
    _global_rule(world, clusters="new")
    world.notifier.handle(cluster_event(version=2, tenants=TENANTS))
    assert world.work() == [] and world.transport.sent == []
    _global_rule(world, recipients=[])
    world.notifier.handle(cluster_event())
    assert sorted(world.work()) == ["sent"] * 4  # both rules' two channels
    assert len(world.transport.sent) == 1  # the rule with recipients only


def test_hostile_indicator_text_is_inert_and_valid_on_both_platforms():
    rule = parse_rule({"name": HOSTILE[:120], "recipients": ["soc@mssp.example"],
                       "on_new": False, "clusters": "new"}, GLOBAL)
    tenants = [{"id": t["id"], "name": HOSTILE, "alerts": 1} for t in TENANTS]
    for value in (HOSTILE_URL, "javascript:alert(1)//" + HOSTILE * 30):
        item = cluster_facts(cluster_event(value=value, tenants=tenants), rule,
                             "https://hub.example/api/portal")
        card = teams_card(item, "Contoso MSSP", rule.name)
        message = slack_message(item, "Contoso MSSP", rule.name)
        assert _teams_ok(card) and _slack_ok(message)
        teams_text, slack_text = json.dumps(card), json.dumps(message)
        for live in ("<at>", "<script>", "[x](https", "<b>"):
            assert live not in teams_text
        for live in ("<!channel>", "<@U024BE7LH>", "<script>", "@here", "<b>"):
            assert live not in slack_text
        links = [a["url"] for a in card["attachments"][0]["content"].get("actions", [])]
        assert all(u.startswith("https://hub.example/") for u in links)  # never the value
        assert len(slack_text.encode()) < 28_000 and len(teams_text.encode()) < 28_000


def test_a_wide_cluster_lists_some_customers_and_counts_the_rest():
    rule = parse_rule({"name": "c", "recipients": ["soc@mssp.example"], "on_new": False,
                       "clusters": "new", "include_org_name": False}, GLOBAL)
    tenants = [{"id": f"{n:08d}-0000-4000-8000-000000000000", "name": f"Acme {n}",
                "alerts": 2} for n in range(MAX_LISTED + 7)]
    item = cluster_facts(cluster_event(tenants=tenants), rule, "")
    assert item.more == 7 and len(item.customers) == MAX_LISTED
    assert item.customers[0] == "00000000-0000-4000-8000-000000000000: 2 alerts"
    card, message = teams_card(item, "M", "c"), slack_message(item, "M", "c")
    assert _teams_ok(card) and _slack_ok(message)
    assert "…and 7 more customers" in _texts(card)
    assert "Acme" not in json.dumps(card) + json.dumps(message)  # no names: ids only


def _tenant_rule(world: World, tenant: str, **fields):
    body = {"name": f"customer {tenant[:4]}", "recipients": [f"contact@{tenant[:4]}.example"],
            "channels": CHANNELS, **fields}
    return world.notifier.save_rule(parse_rule(body, tenant, webhooks=world.webhooks))


def _alert(tenant: str, title: str) -> AlertEvent:
    return AlertEvent(tenant, f"Tenant {tenant[:4]}", "da1", "2026-12-03T07:00:00Z", "new", {},
                      {"id": "da1", "title": title, "severity": "High",
                       "alertCreationTime": "2099-01-01T00:00:00Z",
                       "lastUpdateTime": "2026-12-03T07:00:00Z"})


def test_tenant_rules_get_no_cluster_and_never_another_tenants_alert_text(world):
    """Each customer's rule (channels, emails, a digest) gets its own alerts only: not the
    cluster that names both, nor the other customer's alert."""
    mine, other = TENANTS[0]["id"], OTHER
    _tenant_rule(world, mine)
    digest = _tenant_rule(world, other, delivery="digest", digest_minutes=5)
    both = [{"id": mine, "name": "Mine", "alerts": 1}, {"id": other, "name": "Other",
                                                          "alerts": 1}]
    for severity in ("High", "Low"):
        world.notifier.handle(cluster_event(tenants=both, severities={severity: 2}))
    assert world.work() == [] and world.transport.sent == []  # nothing of a cluster
    world.notifier.handle(_alert(mine, "Mine: secret-of-mine"))
    world.notifier.handle(_alert(other, "Other: secret-of-other"))
    world.notifier.send_digests(datetime.now(UTC) + timedelta(hours=1))
    assert sorted(world.work()) == ["sent"] * 4
    by_recipient = {str(m["To"]): m for m in world.transport.sent}
    assert set(by_recipient) == {f"contact@{mine[:4]}.example", f"contact@{other[:4]}.example"}
    for tenant, secret, leaked in ((mine, "secret-of-mine", "secret-of-other"),
                                   (other, "secret-of-other", "secret-of-mine")):
        email = str(by_recipient[f"contact@{tenant[:4]}.example"])
        assert secret in email and leaked not in email
        assert "indicator" not in email.lower() and "customers" not in email
    posts = [json.dumps(p) for _, p in world.poster.posted]
    assert sum("secret-of-mine" in p for p in posts) == 2  # its own channels
    assert sum("secret-of-other" in p for p in posts) == 2  # its digest's channels
    assert not any("secret-of-mine" in p and "secret-of-other" in p for p in posts)
    assert len(world.digests.held(digest.id)) == 0


def test_a_link_too_long_for_a_button_opens_the_clusters_list():
    rule = parse_rule({"name": "c", "recipients": ["soc@mssp.example"], "on_new": False,
                       "clusters": "new"}, GLOBAL)
    long_url = "https://x.example/" + "%3Cscript%3E" * 250
    item = cluster_facts(cluster_event(value=long_url), rule, "https://hub.example/api/portal")
    assert item.hub_url == "https://hub.example/api/portal/clusters"
    message = slack_message(item, "M", "c")
    assert _slack_ok(message) and message["blocks"][-1]["elements"][0]["url"] == item.hub_url
