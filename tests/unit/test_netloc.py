"""Loopback is parsed, never a text prefix: look-alike names are anyone's."""

from __future__ import annotations

import pytest

from shared.config import SettingsError
from shared.netloc import authority, host_port, is_loopback, origin
from tests.helpers import settings

LOOPBACK = ["http://127.0.0.1:7071", "http://127.0.0.1", "http://127.10.20.30:8080/base",
            "http://localhost:7071", "http://LocalHost", "https://localhost:8443",
            "http://[::1]:7071", "http://[0:0:0:0:0:0:0:1]"]
NOT_LOOPBACK = [
    "http://localhost.evil.example", "http://127.0.0.1.nip.io:7071",  # the two
    "http://127.0.0.1@evil.example", "http://localhost:7071@evil.example",
    "http://evil@127.0.0.1", "http://localhost\\@evil.example",
    "http://[::ffff:127.0.0.1]",  # IPv4-mapped: not what the local host binds
    "http://localhost.", "http://127.1", "http://2130706433", "http://0x7f.0.0.1",
    "http://127.0.0.01", "http://[::1%25lo]", "http://128.0.0.1", "http://0.0.0.0",
    "http://[::]", "http://localhost:99999", "http://localhost:x", "ftp://localhost",
    "file://localhost/etc", "http://evil.example#@127.0.0.1", "http://evil.example/127.0.0.1",
    "https://mssp.azurewebsites.net", "localhost:7071", "", "http://",
]


@pytest.mark.parametrize("url", LOOPBACK)
def test_loopback(url):
    assert is_loopback(url)


@pytest.mark.parametrize("url", NOT_LOOPBACK)
def test_not_loopback(url):
    assert not is_loopback(url)


def test_a_host_header_compares_as_host_and_port():
    assert authority("http://127.0.0.1:7071/") == host_port("127.0.0.1:7071")
    assert authority("https://App.Example") == host_port("app.example", "https") \
        == host_port("APP.example:443", "https") == "app.example:443"
    assert host_port("[::1]:7071") == authority("http://[::1]:7071") == "[::1]:7071"
    for bad in ("", "evil@127.0.0.1:7071", "127.0.0.1:7071/x", "127.0.0.1:x", "a b"):
        assert host_port(bad) == ""
    assert host_port("evil.example:7071") != authority("http://127.0.0.1:7071")
    assert host_port("localhost:7071") != authority("http://127.0.0.1:7071")


def test_the_own_origin_is_written_as_a_browser_writes_origin():
    assert origin("http://127.0.0.1:7071/") == "http://127.0.0.1:7071"
    assert origin("https://App.Example:443/mssp") == "https://app.example"
    assert origin("http://[::1]:80") == "http://[::1]"
    assert origin("https://app.example:8443") == "https://app.example:8443"


@pytest.mark.parametrize("url", ["http://localhost.evil.example", "http://127.0.0.1.nip.io",
                                 "http://127.0.0.1@evil.example:7071"])
def test_a_look_alike_base_url_is_not_local(url):
    """Over http it is refused outright; over https it is a public URL like any other:
    no portal key, and the principal header counts only behind App Service."""
    with pytest.raises(SettingsError) as err:
        settings(PUBLIC_BASE_URL=url)
    assert err.value.setting == "PUBLIC_BASE_URL" and url not in str(err.value)
    secure = url.replace("http://", "https://")
    if "@" in url:
        with pytest.raises(SettingsError):
            settings(PUBLIC_BASE_URL=secure)
        return
    portal = settings(PUBLIC_BASE_URL=secure).portal
    assert not portal.local and not portal.principal_trusted
    with pytest.raises(SettingsError) as err:
        settings(PUBLIC_BASE_URL=secure, PORTAL_KEY="local-key-0123456789")
    assert err.value.setting == "PORTAL_KEY"


def test_the_base_url_is_a_url_and_nothing_more():
    for bad in ("https://", "https://a.example?x=1", "https://a.example/#top",
                "https://user@a.example", "https://a.example:99999"):
        with pytest.raises(SettingsError) as err:
            settings(PUBLIC_BASE_URL=bad)
        assert err.value.setting == "PUBLIC_BASE_URL"
    assert settings(PUBLIC_BASE_URL="https://a.example/mssp/").onboarding.public_base_url \
        == "https://a.example/mssp"
    for local in ("http://127.0.0.1:7071", "http://localhost:7071", "http://[::1]:7071"):
        assert settings(PUBLIC_BASE_URL=local, PORTAL_KEY="local-key-0123456789").portal.local
