"""Channels in the portal: added and removed in the rule form (one line each), each
channel's last result on the tenant page (never its URL), a test post from there."""

from __future__ import annotations

import pytest

from shared.notify.channels.delivery import ChannelDelivery, ChannelStores
from shared.notify.channels.transport import Rejected
from shared.notify.channels.webhooks import Webhooks
from shared.notify.rules import parse_rule
from shared.portal import auth
from shared.portal.pages import Request
from shared.portal.rule_form import rule_from_form
from shared.storage.memory.channels import MemoryChannelStatus
from shared.storage.memory.ingest import MemoryQueue
from shared.storage.memory.notify import MemoryNotifyLedger
from shared.storage.queues import ChannelQueue
from shared.validation import ValidationError
from tests.unit.test_channel_delivery import SLACK_URL, FakePoster
from tests.unit.test_portal_alert_page import PUBLIC, TENANT, Desk

FORM = {"name": "SOC", "recipients": "", "on_new": "yes", "enabled": "yes",
        "channels_shown": "yes",
        "channels": "slack soc-slack SLACK_SOC\r\nteams soc-teams TEAMS_SOC\r\n"}


def test_channels_are_added_and_removed_one_line_each():
    rule = rule_from_form(FORM, TENANT)
    assert rule.channels == [
        {"type": "slack", "name": "soc-slack", "webhook_setting": "SLACK_SOC"},
        {"type": "teams", "name": "soc-teams", "webhook_setting": "TEAMS_SOC"}]
    removed = rule_from_form({**FORM, "channels": "teams soc-teams TEAMS_SOC"}, TENANT,
                             existing=rule)
    assert [c["name"] for c in removed.channels] == ["soc-teams"]
    kept = rule_from_form({k: v for k, v in FORM.items() if k != "channels_shown"}
                          | {"recipients": "a@x.example"}, TENANT, existing=rule)
    assert kept.channels == rule.channels  # a form from before channels leaves them
    with pytest.raises(ValidationError) as err:
        rule_from_form({**FORM, "channels": "slack soc\nteams two words X"}, TENANT)
    assert {e["field"] for e in err.value.errors} == {"channels.0", "channels.1"}
    with pytest.raises(ValidationError) as err:  # the setting is checked when saved
        rule_from_form(FORM, TENANT, webhooks=Webhooks({"SLACK_SOC": SLACK_URL}, False))
    assert [e["field"] for e in err.value.errors] == ["channels.1.webhook_setting"]


def _desk() -> tuple[Desk, ChannelDelivery, FakePoster]:
    desk = Desk()
    poster = FakePoster()
    channels = ChannelDelivery(
        ChannelStores(desk.portal.rules, MemoryNotifyLedger(), MemoryChannelStatus(),
                      ChannelQueue(MemoryQueue())),
        Webhooks({"SLACK_SOC": SLACK_URL}, local=False), poster, "Contoso", PUBLIC)
    desk.portal.channels = channels
    return desk, channels, poster


def test_the_tenant_page_shows_each_channels_last_result_and_tests_it():
    desk, channels, poster = _desk()
    rule = desk.portal.rules.save(parse_rule({"name": "SOC", "recipients": [], "channels": [
        {"type": "slack", "name": "soc-slack", "webhook_setting": "SLACK_SOC"}]}, TENANT))
    channels.status.mark_failing(rule.id, "soc-slack", TENANT, "404 no_service", "x")
    page = desk.portal.tenant(Request("GET", desk.headers(), route={"tenant_id": TENANT}))
    assert 'data-channel="soc-slack"' in page.body and "failing: 404 no_service" in page.body
    assert "SECRET2" not in page.body and "SLACK_SOC" in page.body

    def test_post() -> object:
        principal = auth.authenticate(desk.settings.portal, desk.headers())
        return desk.portal.rule_action(Request(
            "POST", desk.headers(origin=PUBLIC),
            route={"scope": TENANT, "rule_id": rule.id, "action": "test"},
            form={"csrf": auth.csrf_token(desk.settings.portal, principal), "back": TENANT,
                  "channel": "soc-slack"}))

    poster.answers[SLACK_URL] = [Rejected("410 channel_is_archived")]
    refused = test_post()
    assert refused.status == 400 and "The test post failed: soc-slack: 410" in refused.body
    went = test_post()
    assert went.status == 303 and went.headers["Location"].endswith("?done=test")
    assert not channels.status.get(rule.id, "soc-slack").failing
    assert len(poster.to(SLACK_URL)) == 1


def test_a_channel_taken_off_in_the_form_or_its_rule_deleted_is_no_longer_failing():
    desk, channels, _poster = _desk()
    rule = desk.portal.rules.save(parse_rule({"name": "SOC", "recipients": [], "channels": [
        {"type": "slack", "name": "soc-slack", "webhook_setting": "SLACK_SOC"},
        {"type": "slack", "name": "old", "webhook_setting": "SLACK_SOC"}]}, TENANT))
    for name in ("soc-slack", "old"):
        channels.status.mark_failing(rule.id, name, TENANT, "404 no_service", "x")
    principal = auth.authenticate(desk.settings.portal, desk.headers())
    csrf = auth.csrf_token(desk.settings.portal, principal)

    def action(verb: str, form: dict[str, str] | None = None) -> object:
        return desk.portal.rule_action(Request(
            "POST", desk.headers(origin=PUBLIC),
            route={"scope": TENANT, "rule_id": rule.id, "action": verb},
            form={"csrf": csrf, "back": TENANT, **(form or {})}))

    saved = action("save", {**FORM, "channels": "slack soc-slack SLACK_SOC"})
    assert saved.status == 303, saved.body
    assert [(s.name, s.failing) for s in channels.status.for_rule(rule.id)] == [
        ("soc-slack", False)]
    channels.status.mark_failing(rule.id, "soc-slack", TENANT, "404 no_service", "x")
    assert action("delete").status == 303
    assert channels.status.for_rule(rule.id) == [] and not channels.status.failing()
