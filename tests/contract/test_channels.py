"""The channel status contract, on Azurite and on the in-memory fake: a channel's last
result, its failing mark (with the URL's fingerprint) until the rule is saved again, and
the failing channels the health check lists."""

from __future__ import annotations

import uuid

import pytest

from shared.storage.channel_status import ChannelStatusRepository
from shared.storage.memory.channels import MemoryChannelStatus

SCOPE = "3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b"


@pytest.fixture
def status(backend):
    return backend.repo(ChannelStatusRepository, "Channels", MemoryChannelStatus)


def test_a_channel_keeps_its_last_result(status):
    rule = uuid.uuid4().hex
    assert status.get(rule, "soc") is None
    status.record(rule, "soc", SCOPE, "rate limited: 429")
    status.record(rule, "soc", SCOPE, "sent")
    state = status.get(rule, "soc")
    assert (state.rule_id, state.name, state.scope, state.result, state.failing) == (
        rule, "soc", SCOPE, "sent", False)


def test_a_failing_mark_holds_until_the_rule_is_saved_or_a_post_succeeds(status):
    rule, other = uuid.uuid4().hex, uuid.uuid4().hex
    status.mark_failing(rule, "soc/teams ✓", SCOPE, "404 no_service", "f1")
    status.mark_failing(rule, "ops", SCOPE, "410 channel_is_archived", "f2")
    status.mark_failing(other, "x", "*", "403 action_prohibited", "f3")
    state = status.get(rule, "soc/teams ✓")
    assert (state.failing, state.reason, state.fingerprint, state.result) == (
        True, "404 no_service", "f1", "failing: 404 no_service")
    assert [(s.rule_id, s.name) for s in status.failing()
            if s.rule_id in (rule, other)] == sorted([(rule, "ops"), (rule, "soc/teams ✓"),
                                                      (other, "x")])
    status.reset(rule)
    status.reset(rule)  # twice: the same
    assert [s.failing for s in status.for_rule(rule)] == [False, False]
    assert status.get(rule, "soc/teams ✓").result == "failing: 404 no_service"  # last result
    assert status.get(other, "x").failing
    status.record(other, "x", "*", "sent (test post)")
    assert not status.get(other, "x").failing
    assert not [s for s in status.failing() if s.rule_id in (rule, other)]


def test_a_deleted_rule_or_a_removed_channel_leaves_no_row_behind(status):
    rule, other = uuid.uuid4().hex, uuid.uuid4().hex
    status.mark_failing(rule, "Soc/Teams ✓", SCOPE, "404 no_service", "f1")
    status.record(rule, "ops", SCOPE, "sent")
    status.mark_failing(rule, "old", SCOPE, "410 channel_is_archived", "f2")
    status.mark_failing(other, "x", "*", "403 action_prohibited", "f3")
    status.forget(rule, keep=["soc/teams ✓", "ops"])  # "old" taken off the rule
    status.forget(rule, keep=["soc/teams ✓", "ops"])  # twice (a redelivery): the same
    assert [s.name for s in status.for_rule(rule)] == ["Soc/Teams ✓", "ops"]
    assert status.get(rule, "old") is None
    status.forget(rule)  # the rule deleted
    assert status.for_rule(rule) == [] and status.get(rule, "Soc/Teams ✓") is None
    assert [s.rule_id for s in status.failing() if s.rule_id in (rule, other)] == [other]
    status.forget(uuid.uuid4().hex)  # a rule with no rows: nothing to do
