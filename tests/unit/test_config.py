"""Settings are validated once, with errors that name the setting and never its value."""

from __future__ import annotations

import json
import os

import pytest

from shared.config import SETTINGS, Settings, SettingsError
from shared.storage.connection import AZURITE_KEY
from tests.conftest import ROOT
from tests.helpers import app_env


def test_missing_storage_names_the_setting():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({})
    assert err.value.setting == "AzureWebJobsStorage"
    assert "AzureWebJobsStorage__queueServiceUri" in str(err.value)


def test_garbage_connection_string_is_refused_without_echoing_it():
    with pytest.raises(SettingsError) as err:
        Settings.from_env(app_env(AzureWebJobsStorage="hunter2-not-a-connection"))
    assert err.value.setting == "AzureWebJobsStorage"
    assert "hunter2" not in str(err.value)


def test_development_storage_means_azurite_and_the_key_stays_out_of_repr():
    settings = Settings.from_env(app_env())
    assert "127.0.0.1:10001" in settings.storage.connection_string
    assert AZURITE_KEY not in repr(settings)
    assert "s3cret-value" not in repr(settings)


def test_identity_based_storage():
    settings = Settings.from_env(app_env(
        AzureWebJobsStorage=None,
        AzureWebJobsStorage__queueServiceUri="https://acct.queue.core.windows.net",
        AzureWebJobsStorage__tableServiceUri="https://acct.table.core.windows.net",
        AzureWebJobsStorage__credential="managedidentity",
        AzureWebJobsStorage__clientId="00000000-0000-0000-0000-000000000001",
    ))
    assert settings.storage.connection_string is None
    assert settings.storage.table_service_uri == "https://acct.table.core.windows.net"
    assert settings.storage.client_id.endswith("0001")


def test_identity_based_storage_from_account_name():
    storage = Settings.from_env(app_env(AzureWebJobsStorage=None,
                                        AzureWebJobsStorage__accountName="acct")).storage
    assert storage.queue_service_uri == "https://acct.queue.core.windows.net"


def test_identity_uri_must_be_https():
    with pytest.raises(SettingsError) as err:
        Settings.from_env(app_env(
            AzureWebJobsStorage=None,
            AzureWebJobsStorage__queueServiceUri="http://acct.queue.core.windows.net",
            AzureWebJobsStorage__tableServiceUri="https://acct.table.core.windows.net"))
    assert err.value.setting == "AzureWebJobsStorage__queueServiceUri"


def test_worker_runtime_must_be_python():
    with pytest.raises(SettingsError) as err:
        Settings.from_env(app_env(FUNCTIONS_WORKER_RUNTIME="node"))
    assert err.value.setting == "FUNCTIONS_WORKER_RUNTIME"


def test_every_setting_is_in_the_sample_and_the_settings_reference():
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    reference = (ROOT / "docs" / "settings.md").read_text()
    for setting in SETTINGS:
        assert setting.name in sample, f"{setting.name} missing from local.settings.sample.json"
        assert f"| `{setting.name}` |" in reference, f"{setting.name} missing from docs/settings.md"
    for name in sample:
        assert f"| `{name}` |" in reference, f"sample setting {name} is not documented"


def test_the_settings_reference_is_generated_from_the_declarations():
    from devhost.host import KEY_SETTINGS
    from devtools import docs_settings

    assert {s.name for s in docs_settings.HOST_SETTINGS} == set(KEY_SETTINGS)
    assert (ROOT / "docs" / "settings.md").read_text() == docs_settings.render(), (
        "docs/settings.md is out of date: run python -m devtools.docs_settings")
    assert docs_settings.main(["--check"]) == 0


@pytest.mark.parametrize(("overrides", "setting"), [
    ({"MSSP_CLIENT_ID": ""}, "MSSP_CLIENT_ID"),
    ({"MSSP_CLIENT_ID": "not-a-guid"}, "MSSP_CLIENT_ID"),
    ({"MSSP_CLIENT_SECRET": ""}, "MSSP_CLIENT_SECRET"),
    ({"MSSP_CLIENT_CERTIFICATE_PATH": "/nonexistent.pem"}, "MSSP_CLIENT_CERTIFICATE_PATH"),
    ({"MSSP_CLOUD": "mars"}, "MSSP_CLOUD"),
    ({"MSSP_AUTHORITY_HOST": "http://login.example"}, "MSSP_AUTHORITY_HOST"),
    ({"MSSP_SIGN_IN_HOST": "http://login.example"}, "MSSP_SIGN_IN_HOST"),
    ({"MSSP_SIGN_IN_HOST": "ftp://127.0.0.1:9000"}, "MSSP_SIGN_IN_HOST"),
    ({"MSSP_CA_BUNDLE": "/nonexistent.pem"}, "MSSP_CA_BUNDLE"),
    ({"FETCH_PAGE_SIZE": "10001"}, "FETCH_PAGE_SIZE"),
    ({"FETCH_PAGE_SIZE": "many"}, "FETCH_PAGE_SIZE"),
    ({"FETCH_OVERLAP_SECONDS": "-1"}, "FETCH_OVERLAP_SECONDS"),
    ({"FETCH_INITIAL_LOOKBACK_DAYS": "181"}, "FETCH_INITIAL_LOOKBACK_DAYS"),
    ({"STORAGE_FAST_PATHS": "yes"}, "STORAGE_FAST_PATHS"),
])
def test_bad_identity_and_fetch_settings_are_named(overrides, setting):
    with pytest.raises(SettingsError) as err:
        Settings.from_env(app_env(**overrides))
    assert err.value.setting == setting


def test_clouds_pick_hosts_and_overrides_win():
    from tests.helpers import settings

    public = settings().identity
    assert public.authority_host == "https://login.microsoftonline.com"
    assert public.api_base() == "https://api.securitycenter.microsoft.com"
    assert public.api_base("eu") == "https://eu.api.security.microsoft.com"
    high = settings(MSSP_CLOUD="usgovhigh").identity
    assert high.authority_host == "https://login.microsoftonline.us"
    assert high.api_base("eu") == "https://api-gov.securitycenter.microsoft.us"
    local = settings(MSSP_AUTHORITY_HOST="https://127.0.0.1:9443/",
                     MSSP_DEFENDER_API_BASE="https://127.0.0.1:9443").identity
    assert local.authority_host == "https://127.0.0.1:9443"
    assert local.api_base("eu") == "https://127.0.0.1:9443"
    assert local.browser_authority == "https://127.0.0.1:9443"  # the browser goes there too
    browser = settings(MSSP_AUTHORITY_HOST="https://127.0.0.1:9443",
                       MSSP_SIGN_IN_HOST="http://127.0.0.1:9080/").identity
    assert (browser.authority_host, browser.browser_authority) == (
        "https://127.0.0.1:9443", "http://127.0.0.1:9080")  # only the browser's pages
    assert settings().fetch.page_size == 10_000


@pytest.mark.parametrize(("overrides", "setting"), [
    ({"MAIL_TRANSPORT": "pigeon"}, "MAIL_TRANSPORT"),
    ({"MAIL_TRANSPORT": "smtp"}, "SMTP_HOST"),
    ({"MAIL_TRANSPORT": "graph"}, "MSSP_TENANT_ID"),
    ({"SMTP_SECURITY": "ssl3"}, "SMTP_SECURITY"),
    ({"SMTP_PORT": "70000"}, "SMTP_PORT"),
    ({"MAIL_FROM": "a@b.example\r\nBcc: x@y"}, "MAIL_FROM"),
    ({"GRAPH_BASE_URL": "http://graph.example"}, "GRAPH_BASE_URL"),
])
def test_bad_mail_settings_are_named(overrides, setting):
    with pytest.raises(SettingsError) as err:
        Settings.from_env(app_env(**overrides))
    assert err.value.setting == setting


@pytest.mark.parametrize("proxy", [None, "HTTPS_PROXY", "no_proxy"])
def test_storage_http_reads_the_environment_once_unless_a_proxy_is_set(monkeypatch, proxy):
    """requests scans the whole environment twice per request for proxies; the storage
    transport reads it once, keeps its CA bundle, and leaves proxies to requests."""
    for name in [n for n in os.environ if n.lower().endswith("_proxy") or n == "NETRC"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/mssp/ca.pem")
    if proxy:
        monkeypatch.setenv(proxy, "http://proxy.example:3128")
    transport = Settings.from_env(app_env()).storage._transport
    assert transport.session.trust_env is (proxy is not None)
    assert transport.connection_config.verify == "/etc/mssp/ca.pem"
