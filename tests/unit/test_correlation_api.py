"""The keyed correlation API through its Functions adapter on a fake CorrelationReads:
clusters (order, cursor, limit), one indicator's cluster, the lookup, the suppression
list; every bad input a 4xx JSON naming its field, never a 500; a change needs a named
automation key, whose name is the author; hostile text goes out as JSON strings."""

from __future__ import annotations

import hashlib
import json

import azure.functions as func
import pytest

from functions import clusters
from shared import services
from shared.correlation import api
from shared.correlation.model import KINDS, Indicator
from shared.correlation.search import indicator_of
from shared.validation import ValidationError
from tests.correlation_fakes import FakeCorrelation
from tests.helpers import settings

SOAR_KEY = "soar-key-0123456789"
T1, T2, T3 = ("3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b", "9d0e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
              "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
URL = indicator_of("http://evil.example/<script>alert(1)</script>")
IP = indicator_of("185.1.2.3")


@pytest.fixture
def reads(monkeypatch) -> FakeCorrelation:
    fake = FakeCorrelation()
    for n, tid in enumerate((T1, T2, T3), 1):
        fake.see(URL, tid, f"Tenant {n}", f"da{n}", f"2026-12-0{n}T00:00:00.0000000Z",
                 title="<img src=x onerror=alert(2)>")
    for n, tid in enumerate((T1, T2), 1):
        fake.see(IP, tid, f"Tenant {n}", f"ip{n}", f"2026-12-0{n + 3}T00:00:00.0000000Z")
    digest = hashlib.sha256(SOAR_KEY.encode()).hexdigest()
    configured = settings(MSSP_API_KEYS=f"soar:{digest}")
    monkeypatch.setattr(services, "correlation", lambda: fake)
    monkeypatch.setattr(services, "get_settings", lambda: configured)
    return fake


def call(handler, method: str = "GET", url: str = "/api/x", params: dict | None = None,
         body: object = None, key: str | None = None, route: dict | None = None):
    raw = json.dumps(body).encode() if body is not None else b""
    headers = {"X-Api-Key": key} if key else {}
    response = handler(func.HttpRequest(method, url, headers=headers, params=params or {},
                                        route_params=route or {}, body=raw))
    return response.status_code, json.loads(response.get_body())


def test_clusters_in_each_order_and_pages(reads):
    status, body = call(clusters.clusters_list)
    assert status == 200
    assert [c["indicator"]["kind"] for c in body["clusters"]] == ["ip", "url"]  # recent
    status, body = call(clusters.clusters_list, params={"order": "reach", "limit": "1"})
    assert [c["reach"] for c in body["clusters"]] == [3] and body["cursor"]
    url = body["clusters"][0]
    assert url["indicator"] == {"kind": "url", "value": URL.value, "key": URL.key}
    assert {t["tenant_id"] for t in url["tenants"]} == {T1, T2, T3}
    status, rest = call(clusters.clusters_list, params={"order": "reach", "limit": "1",
                                                         "cursor": body["cursor"]})
    assert [c["reach"] for c in rest["clusters"]] == [2] and "cursor" not in rest


@pytest.mark.parametrize("params, field", [
    ({"order": "size"}, "order"), ({"limit": "0"}, "limit"), ({"limit": "abc"}, "limit"),
    ({"limit": "201"}, "limit"), ({"cursor": "bogus"}, "cursor"), ({"nope": "1"}, "nope"),
    ({"cursor": "x" * 1200}, "cursor")])
def test_a_bad_clusters_query_names_its_field(reads, params, field):
    status, body = call(clusters.clusters_list, params=params)
    assert status == 400 and field in [e["field"] for e in body["errors"]]


def test_one_cluster_by_indicator(reads):
    status, body = call(clusters.cluster_of_indicator, route={"kind": "url"},
                        params={"value": "HTTP://Evil.Example/<script>alert(1)</script>"})
    assert status == 200 and body["reach"] == 3 and body["indicator"]["value"] == URL.value
    assert call(clusters.cluster_of_indicator, route={"kind": "domain"},
                params={"value": "other.example"})[0] == 404
    for route, params, field in (({"kind": "virus"}, {"value": "x"}, "kind"),
                                 ({"kind": "ip"}, {"value": "evil.example"}, "value"),
                                 ({"kind": "ip"}, {}, "value")):
        status, body = call(clusters.cluster_of_indicator, route=route, params=params)
        assert status == 400 and body["errors"][0]["field"] == field


def test_lookup_every_sighting_newest_first(reads):
    status, body = call(clusters.indicator_lookup, params={"value": URL.value})
    assert status == 200
    assert [s["tenant_id"] for s in body["sightings"]] == [T3, T2, T1]
    assert body["sightings"][0]["title"] == "<img src=x onerror=alert(2)>"  # JSON text
    status, body = call(clusters.indicator_lookup, params={
        "value": URL.value, "since": "2026-12-02T00:00:00Z", "limit": "1"})
    assert [s["tenant_id"] for s in body["sightings"]] == [T3] and body["cursor"]
    status, body = call(clusters.indicator_lookup, params={"value": "hello world"})
    assert status == 400 and body["errors"][0]["field"] == "value"
    assert "is not an indicator" in body["errors"][0]["message"]
    status, body = call(clusters.indicator_lookup, params={"value": IP.value,
                                                           "since": "yesterday"})
    assert status == 400 and body["errors"][0]["field"] == "since"


def test_suppressions_need_a_named_key_whose_name_is_the_author(reads):
    new = {"value": IP.value, "reason": "our own scanner"}
    status, body = call(clusters.suppressions, "POST", body=new)
    assert status == 401 and body["errors"][0]["field"] == "X-Api-Key"
    assert call(clusters.suppressions, "POST", body=new, key="wrong")[0] == 401
    status, body = call(clusters.suppressions, "POST", body=new, key=SOAR_KEY)
    assert status == 201 and body["author"] == "soar" and body["indicator"]["kind"] == "ip"
    status, again = call(clusters.suppressions, "POST", body={**new, "reason": "x"},
                         key=SOAR_KEY)
    assert status == 200 and again == body  # the first record stays
    status, listed = call(clusters.suppressions)
    assert status == 200 and listed["suppressions"] == [body]
    status, clustered = call(clusters.clusters_list)
    assert [c["indicator"]["kind"] for c in clustered["clusters"]] == ["url"]
    assert call(clusters.suppressions, "DELETE", params={"value": IP.value})[0] == 401
    status, body = call(clusters.suppressions, "DELETE", params={"value": IP.value},
                        key=SOAR_KEY)
    assert status == 200 and body["removed"] is True and reads.removed == [(IP, "soar")]
    status, body = call(clusters.suppressions, "DELETE", params={"value": IP.value},
                        key=SOAR_KEY)
    assert status == 200 and body["removed"] is False


@pytest.mark.parametrize("body, field", [
    ({"value": "1.2.3.4"}, "reason"), ({"value": "1.2.3.4", "reason": " "}, "reason"),
    ({"value": "1.2.3.4", "reason": "x" * 501}, "reason"),
    ({"value": "1.2.3.4", "reason": "a\nb"}, "reason"),
    ({"value": "<script>", "reason": "x"}, "value"),
    ({"value": "mimikatz.exe", "kind": "file_name", "reason": "x", "by": "me"}, "by"),
    ({"value": "a" * 40, "kind": "sha256", "reason": "x"}, "value"),
    ({"value": 5, "reason": "x"}, "value"), ([], "body")])
def test_a_bad_suppression_names_its_field(reads, body, field):
    status, answer = call(clusters.suppressions, "POST", body=body, key=SOAR_KEY)
    assert status == 400 and field in [e["field"] for e in answer["errors"]]
    assert not reads.suppressions()


def test_a_delete_takes_no_body(reads):
    status, body = call(clusters.suppressions, "DELETE", params={"value": IP.value},
                        body={"value": "x"}, key=SOAR_KEY)
    assert status == 400 and body["errors"][0]["field"] == "value"


def test_a_file_name_is_asked_for_by_kind():
    assert api.indicator_query({"value": "MimiKatz.EXE", "kind": "file_name"}) == \
        Indicator("file_name", "mimikatz.exe")
    with pytest.raises(ValidationError) as refused:
        api.indicator_query({"value": "C:\\tools\\mimikatz.exe", "kind": "file_name"})
    assert refused.value.errors[0]["field"] == "value"


def test_the_documented_kinds_are_the_model_s():
    assert set(api.KIND.__args__) == {"", *KINDS}  # type: ignore[attr-defined]
