"""Settings are validated once, with errors that name the setting and never its value."""

from __future__ import annotations

import json

import pytest

from shared.config import SETTINGS, Settings, SettingsError
from shared.storage.connection import AZURITE_KEY
from tests.conftest import ROOT


def test_missing_storage_names_the_setting():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({})
    assert err.value.setting == "AzureWebJobsStorage"
    assert "AzureWebJobsStorage__queueServiceUri" in str(err.value)


def test_garbage_connection_string_is_refused_without_echoing_it():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"AzureWebJobsStorage": "hunter2-not-a-connection"})
    assert err.value.setting == "AzureWebJobsStorage"
    assert "hunter2" not in str(err.value)


def test_development_storage_means_azurite_and_the_key_stays_out_of_repr():
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert "127.0.0.1:10001" in settings.storage.connection_string
    assert AZURITE_KEY not in repr(settings)


def test_identity_based_storage():
    settings = Settings.from_env({
        "AzureWebJobsStorage__queueServiceUri": "https://acct.queue.core.windows.net",
        "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net",
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
    })
    assert settings.storage.connection_string is None
    assert settings.storage.table_service_uri == "https://acct.table.core.windows.net"
    assert settings.storage.client_id.endswith("0001")


def test_identity_based_storage_from_account_name():
    storage = Settings.from_env({"AzureWebJobsStorage__accountName": "acct"}).storage
    assert storage.queue_service_uri == "https://acct.queue.core.windows.net"


def test_identity_uri_must_be_https():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({
            "AzureWebJobsStorage__queueServiceUri": "http://acct.queue.core.windows.net",
            "AzureWebJobsStorage__tableServiceUri": "https://acct.table.core.windows.net"})
    assert err.value.setting == "AzureWebJobsStorage__queueServiceUri"


def test_worker_runtime_must_be_python():
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"FUNCTIONS_WORKER_RUNTIME": "node",
                           "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert err.value.setting == "FUNCTIONS_WORKER_RUNTIME"


def test_every_setting_is_in_the_sample_and_the_readme():
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert setting.name in sample, f"{setting.name} missing from local.settings.sample.json"
        assert f"| `{setting.name}` |" in readme, f"{setting.name} missing from README table"
    for name in sample:
        assert f"| `{name}` |" in readme, f"sample setting {name} is not documented"
