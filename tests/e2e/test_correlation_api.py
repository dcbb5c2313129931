"""The keyed correlation API on the local host with Azurite and the simulator, after four
customers' alerts sharing indicators went through the pipeline (tests/e2e/
correlation_seed.py): clusters in each order and paged, one indicator's cluster, the
lookup of each kind, the suppression list with a named key; every bad input a 4xx naming
its field; nothing without the function key."""

from __future__ import annotations

import requests

from tests.e2e import correlation_seed
from tests.e2e.correlation_seed import SOAR_KEY

TOOL, extra_settings, correlated = correlation_seed.module_fixtures()


def test_clusters_lookup_and_errors_through_the_api(api, correlated):
    base, session, _ = api
    h = correlated["indicators"]["sha256"]
    tenants = set(correlated["tenants"])
    found = session.get(f"{base}/clusters", params={"limit": "200"}, timeout=10).json()
    mine = [c for c in found["clusters"] if c["indicator"]["key"] == h.key]
    assert len(mine) == 1 and mine[0]["reach"] == 4
    assert {t["tenant_id"] for t in mine[0]["tenants"]} == tenants
    assert {t["tenant_name"] for t in mine[0]["tenants"]} >= {"Alpha <b>Corp</b>", "Delta"}
    assert mine[0]["severities"] == {"High": 2, "Medium": 1, "Low": 1}
    # widest first, and a page at a time by the cursor
    by_reach = session.get(f"{base}/clusters", params={"order": "reach", "limit": "1"},
                           timeout=10).json()
    assert len(by_reach["clusters"]) == 1 and by_reach["cursor"]
    following = session.get(f"{base}/clusters", timeout=10, params={
        "order": "reach", "limit": "1", "cursor": by_reach["cursor"]}).json()
    assert following["clusters"][0]["reach"] <= by_reach["clusters"][0]["reach"]
    assert following["clusters"][0]["indicator"] != by_reach["clusters"][0]["indicator"]
    # one indicator's cluster, whatever its spelling
    one = session.get(f"{base}/clusters/sha256", params={"value": h.value.upper()},
                      timeout=10)
    assert one.status_code == 200 and one.json()["reach"] == 4
    private = session.get(f"{base}/clusters/ip",
                          params={"value": correlated["values"]["private_ip"]}, timeout=10)
    assert private.status_code == 404  # private addresses are no indicator across tenants
    # the lookup of each kind: every tenant and alert that has it
    expected = {"sha256": 4, "sha1": 3, "ip": 3, "url": 2, "domain": 2, "file_name": 2}
    for kind, count in expected.items():
        params = {"value": correlated["values"][kind]}
        if kind == "file_name":
            params["kind"] = kind
        answer = session.get(f"{base}/indicators/lookup", params=params, timeout=10)
        assert answer.status_code == 200, (kind, answer.text)
        sightings = answer.json()["sightings"]
        assert len(sightings) == count, kind
        for s in sightings:
            assert correlated["alerts"][s["tenant_id"]] == s["alert_id"]
            assert s["title"].startswith("Campaign <img src=x onerror=alert(1)>")
    paged = session.get(f"{base}/indicators/lookup", params={"value": h.value, "limit": "3"},
                        timeout=10).json()
    rest = session.get(f"{base}/indicators/lookup", timeout=10, params={
        "value": h.value, "limit": "3", "cursor": paged["cursor"]}).json()
    assert len(paged["sightings"]) == 3 and len(rest["sightings"]) == 1 and "cursor" not in rest
    assert {s["tenant_id"] for s in paged["sightings"] + rest["sightings"]} == tenants
    # bad input: a 400 naming the field
    for path, params, field in (
            ("indicators/lookup", {"value": "hello world"}, "value"),
            ("indicators/lookup", {"value": h.value, "limit": "0"}, "limit"),
            ("indicators/lookup", {"value": h.value, "cursor": "garbage"}, "cursor"),
            ("clusters", {"order": "size"}, "order"),
            ("clusters", {"cursor": "garbage"}, "cursor"),
            ("clusters/virus", {"value": "x"}, "kind"),
            ("clusters/sha1", {"value": h.value}, "value")):
        answer = session.get(f"{base}/{path}", params=params, timeout=10)
        assert answer.status_code == 400, (path, params, answer.text)
        assert field in [e["field"] for e in answer.json()["errors"]], (path, answer.text)
    assert requests.get(f"{base}/clusters", timeout=10).status_code == 401


def test_suppressions_through_the_api_need_a_named_key(api, correlated):
    base, session, _ = api
    domain = correlated["indicators"]["domain"]
    body = {"value": correlated["values"]["domain"].upper() + ".", "reason": "our own portal"}
    assert session.post(f"{base}/suppressions", json=body, timeout=10).status_code == 401
    added = session.post(f"{base}/suppressions", json=body, headers={"X-Api-Key": SOAR_KEY},
                         timeout=10)
    assert added.status_code == 201, added.text
    assert added.json()["author"] == "soar"
    assert added.json()["indicator"] == {"kind": "domain", "value": domain.value,
                                         "key": domain.key}
    again = session.post(f"{base}/suppressions", json={**body, "reason": "changed"},
                         headers={"X-Api-Key": SOAR_KEY}, timeout=10)
    assert again.status_code == 200 and again.json()["reason"] == "our own portal"
    listed = session.get(f"{base}/suppressions", timeout=10).json()["suppressions"]
    assert added.json() in listed
    cluster = f"{base}/clusters/domain"
    assert session.get(cluster, params={"value": domain.value}, timeout=10).status_code == 404
    refused = session.post(f"{base}/suppressions", json={"value": domain.value},
                           headers={"X-Api-Key": SOAR_KEY}, timeout=10)
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "reason"
    assert session.delete(f"{base}/suppressions", params={"value": domain.value},
                          timeout=10).status_code == 401
    removed = session.delete(f"{base}/suppressions", params={"value": domain.value},
                             headers={"X-Api-Key": SOAR_KEY}, timeout=10)
    assert removed.status_code == 200 and removed.json()["removed"] is True
    assert session.get(cluster, params={"value": domain.value}, timeout=10).status_code == 200
    gone = session.delete(f"{base}/suppressions", params={"value": domain.value},
                          headers={"X-Api-Key": SOAR_KEY}, timeout=10)
    assert gone.json()["removed"] is False
