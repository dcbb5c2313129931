"""Pure parts of the local host: route templates, TimeSpans, host.json, local settings."""

from __future__ import annotations

import json

import pytest

from devhost.azurite import Azurite, AzuriteError
from devhost.config import HostConfig, QueueOptions, load_local_settings, timespan_seconds
from devhost.http_server import _query_params
from devhost.queues import decode_body
from devhost.routes import RouteTable, compile_route
from devhost.timers import Schedule, resolve_schedule
from tests.conftest import ROOT


@pytest.mark.parametrize(("template", "path", "params"), [
    ("health", "HEALTH", {}),
    ("items/{id}", "items/a%2Fb", {"id": "a/b"}),
    ("items/{id:int}", "items/-12", {"id": "-12"}),
    ("items/{id:int}", "items/x", None),
    ("t/{tid:guid}", "t/7f1c2a4e-1b2c-4d5e-8f90-123456789abc",
     {"tid": "7f1c2a4e-1b2c-4d5e-8f90-123456789abc"}),
    ("t/{tid:guid}", "t/7f1c2a4e", None),
    ("files/{*rest}", "files/a/b/c", {"rest": "a/b/c"}),
    ("opt/{a?}", "opt", {}),
    ("opt/{a?}", "opt/x", {"a": "x"}),
    ("a/{b}", "a/b/c", None),
])
def test_route_templates(template, path, params):
    assert compile_route(template, None).match(path) == params


def test_literal_routes_win_over_parameters():
    table = RouteTable()
    table.add("tenants/{id}", "param")
    table.add("tenants/new", "literal")
    assert [r.target for r, _ in table.find("tenants/new")] == ["literal", "param"]


def test_bad_route_template_is_refused():
    with pytest.raises(ValueError, match="unknown constraint"):
        compile_route("x/{id:nope}", None)


def test_repeated_query_keys_are_joined_like_the_host():
    assert _query_params("a=1&a=2&b=&c=%20") == {"a": "1,2", "b": "", "c": " "}


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:00:02", 2), ("00:05:00", 300), ("1.02:00:00", 93600), ("00:00:00.250", 0.25)])
def test_timespans(text, seconds):
    assert timespan_seconds(text) == seconds


def test_host_json_queue_defaults_and_limits():
    assert QueueOptions.from_json({}) == QueueOptions()
    assert QueueOptions.from_json({"batchSize": 8}).new_batch_threshold == 4
    with pytest.raises(ValueError, match="batchSize"):
        QueueOptions.from_json({"batchSize": 33})
    project = HostConfig.load(ROOT)
    assert project.route_prefix == "api"
    assert project.queues.max_dequeue_count == 5


def test_base64_decoding():
    assert decode_body("aGVsbG8=", "base64") == b"hello"
    assert decode_body("plain", "none") == b"plain"
    with pytest.raises(ValueError, match="base64"):
        decode_body("not base64!", "base64")
    with pytest.raises(ValueError, match="base64"):
        decode_body("ünï", "base64")


def test_schedules_are_ncrontab_with_seconds_first():
    from datetime import UTC, datetime
    start = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert Schedule("0 */5 * * * *").next_after(start) == datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert Schedule("30 * * * * *").next_after(start) == datetime(2026, 1, 1, 0, 0, 30,
                                                                  tzinfo=UTC)
    assert resolve_schedule("%S%", {"S": "0 0 * * * *"}) == "0 0 * * * *"
    for bad in ("* * *", "61 * * * * *"):
        with pytest.raises(ValueError, match="NCRONTAB"):
            resolve_schedule(bad, {})
    with pytest.raises(ValueError, match="MISSING"):
        resolve_schedule("%MISSING%", {})


def test_local_settings_do_not_override_the_environment(tmp_path):
    (tmp_path / "local.settings.json").write_text(json.dumps({
        "IsEncrypted": False, "Values": {"A": "from-file", "B": "from-file"},
        "Host": {"LocalHttpPort": 7999}}))
    env = {"A": "from-env"}
    assert load_local_settings(tmp_path, env) == {"LocalHttpPort": 7999}
    assert env == {"A": "from-env", "B": "from-file"}


def test_missing_node_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(AzuriteError, match=r"Node\.js is not installed"):
        Azurite(ROOT).start()


def test_missing_azurite_package_says_npm_ci(tmp_path):
    with pytest.raises(AzuriteError, match="npm ci"):
        Azurite(tmp_path).start()
