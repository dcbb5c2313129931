"""Indicators from both alert schemas, normalised, and a pasted search value parsed."""

from __future__ import annotations

import pytest

from shared.alerts.evidence import Evidence
from shared.alerts.view import GRAPH, MDE, AlertView
from shared.correlation.indicators import (
    Options,
    indicators,
    normal_url,
    of_evidence,
    parse_indicator,
)
from shared.correlation.model import DOMAIN, FILE_NAME, IP, SHA1, SHA256, URL, Indicator
from shared.ingest.events import summary
from tests import alert_docs

PUBLIC_IP = "185.220.101.7"


def _found(evidence: list[Evidence], **options: object) -> set[str]:
    return {str(i) for i in of_evidence(evidence, Options(**options))}  # type: ignore[arg-type]


def test_both_schemas_give_the_same_indicators() -> None:
    mde = alert_docs.mde_alert()
    mde["evidence"][3]["ipAddress"] = PUBLIC_IP
    graph = alert_docs.graph_alert()
    graph["evidence"][4]["ipAddress"] = PUBLIC_IP
    a = indicators(AlertView.of(mde, MDE))
    b = indicators(AlertView.of(graph, GRAPH))
    assert set(a) == set(b)
    assert set(a) == {
        Indicator(SHA1, alert_docs.PROC_SHA1), Indicator(SHA256, alert_docs.PROC_SHA256),
        Indicator(SHA1, alert_docs.FILE_SHA1), Indicator(SHA256, alert_docs.FILE_SHA256),
        Indicator(IP, PUBLIC_IP), Indicator(URL, "http://malicious.example/payload"),
        Indicator(DOMAIN, "malicious.example")}
    assert len(a) == len(set(a))  # deduplicated


def test_office_alert_sender_ip_and_urls() -> None:
    doc = alert_docs.office_alert()
    doc["evidence"][0]["senderIp"] = "8.8.4.4"
    found = {str(i) for i in indicators(AlertView.of(doc, GRAPH))}
    assert found == {"ip:8.8.4.4", "url:https://phish.example/login", "domain:phish.example"}


def test_hashes_exact_length_hex_lower_case() -> None:
    good = "A" * 64
    assert _found([Evidence(sha256=good, sha1="B" * 40)]) == {f"sha256:{'a' * 64}",
                                                              f"sha1:{'b' * 40}"}
    assert _found([Evidence(sha256="a" * 63), Evidence(sha256="g" * 64),
                   Evidence(sha1="a" * 41), Evidence(sha256="a" * 64 + " ")]) == set()


@pytest.mark.parametrize("address", [
    "10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.1.1", "224.0.0.1",
    "240.0.0.1", "0.0.0.0",  # noqa: S104 (data)
    "100.64.0.9", "192.0.2.4", "198.51.100.1", "203.0.113.7",
    "::1", "fe80::1", "fc00::1", "2001:db8::1", "255.255.255.255", "::ffff:10.0.0.1"])
def test_private_and_special_addresses_are_not_indicators(address: str) -> None:
    assert _found([Evidence(ip=address)]) == set()


def test_private_addresses_kept_when_asked() -> None:
    assert _found([Evidence(ip="10.1.2.3")], include_private=True) == {"ip:10.1.2.3"}
    assert _found([Evidence(ip="127.0.0.1")], include_private=True) == set()


def test_public_addresses_canonical() -> None:
    assert _found([Evidence(ip=" 8.8.8.8 "), Evidence(ip="::ffff:8.8.8.8"),
                   Evidence(ip="2606:4700:4700:0000:0000:0000:0000:1111")]) == {
        "ip:8.8.8.8", "ip:2606:4700:4700::1111"}
    assert _found([Evidence(ip="8.8.8")]) == set()


@pytest.mark.parametrize(("raw", "url"), [
    ("HTTP://Evil.EXAMPLE.:80/a/B?x=1#frag", "http://evil.example/a/B?x=1"),
    ("https://evil.example:443", "https://evil.example/"),
    ("https://evil.example:8443/x", "https://evil.example:8443/x"),
    ("https://user:pw@evil.example/x", "https://evil.example/x"),
    ("evil.example/x", "http://evil.example/x"),
    ("http://bücher.example/", "http://xn--bcher-kva.example/"),
    ("http://evil.example/<script>alert(1)</script>",
     "http://evil.example/%3Cscript%3Ealert(1)%3C/script%3E"),
    ("http://evil.example/a b\"c", "http://evil.example/a%20b%22c"),
])
def test_urls_normalised(raw: str, url: str) -> None:
    assert normal_url(raw)[0] == url


def test_url_gives_its_domain_and_bare_host_a_domain_only() -> None:
    assert _found([Evidence(url="HTTPS://Evil.Example./x")]) == {
        "url:https://evil.example/x", "domain:evil.example"}
    assert _found([Evidence(url="Evil.Example")]) == {"domain:evil.example"}
    assert _found([Evidence(url="http://8.8.8.8/x")]) == {"url:http://8.8.8.8/x",
                                                          "ip:8.8.8.8"}
    assert _found([Evidence(url="http://10.0.0.1/x")]) == {"url:http://10.0.0.1/x"}


@pytest.mark.parametrize("raw", [
    "javascript:alert(1)", "http://<script>/", "http://evil/", "http://a..b/",
    "http://evil.example:99999/", "ftp://", "http://127.0.0.1/x", "mailto:x@evil.example"])
def test_hostile_or_broken_urls_are_not_indicators(raw: str) -> None:
    assert not {i.kind for i in of_evidence([Evidence(url=raw)])} & {URL, DOMAIN}


def test_values_cut_by_the_summary_are_not_indicators() -> None:
    long_url = "http://evil.example/" + "a" * 600
    doc = alert_docs.mde_alert()
    doc["evidence"] = [{"entityType": "Url", "url": long_url},
                       {"entityType": "Url", "url": "http://other.example/…"}]
    brief = summary(doc)
    view = AlertView.of(brief, MDE)
    assert brief["evidence"][0]["url"].endswith("…")
    assert indicators(view) == []
    assert Indicator(URL, long_url) in indicators(AlertView.of(doc, MDE))


def test_tool_names_only_when_listed() -> None:
    items = [Evidence(file_name="MimiKatz.EXE"), Evidence(file_name="notepad.exe")]
    assert _found(items) == set()
    assert _found(items, tool_names=frozenset({"mimikatz.exe"})) == {"file_name:mimikatz.exe"}


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("A" * 64, SHA256, "a" * 64), ("b" * 40, SHA1, "b" * 40),
    (" 8.8.8.8 ", IP, "8.8.8.8"), ("10.0.0.1", IP, "10.0.0.1"),
    ("2001:4860:4860::8888", IP, "2001:4860:4860::8888"),
    ("Evil.Example.", DOMAIN, "evil.example"),
    ("https://Evil.Example/<script>", URL, "https://evil.example/%3Cscript%3E"),
    ("evil.example/path", URL, "http://evil.example/path"),
    ("file_name:MimiKatz.exe", FILE_NAME, "mimikatz.exe"),
    ("url:http://x.example", URL, "http://x.example/"),
    ("domain:x.example", DOMAIN, "x.example"),
])
def test_parse_indicator(text: str, kind: str, value: str) -> None:
    assert parse_indicator(text) == Indicator(kind, value)


@pytest.mark.parametrize("text", [
    "", "   ", "not a thing", "<script>alert(1)</script>", "a" * 3000, "sha256:abc",
    "ip:nope", "http://evil.example/…", "javascript:alert(1)", "file_name:../x", "localhost"])
def test_parse_indicator_refuses_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_indicator(text)
    assert str(raised.value)


def test_keys_are_storage_safe() -> None:
    key = parse_indicator("http://evil.example/a?b#c").key
    assert key.startswith("url-") and not set(key) & set("/\\#?")
