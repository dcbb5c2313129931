"""Configuration drift, without Azure: what the code reads, infra sets, and names agree."""

from __future__ import annotations

import importlib
import json
import re
import sys

from shared.config import SETTINGS
from shared.storage import tables
from tests.conftest import ROOT

INFRA = ROOT / "infra"
# set by infra for the platform, not read by our code
PLATFORM = {"APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            "AzureWebJobsStorage__blobServiceUri"}
LOCAL_ONLY = {"AzureWebJobsStorage"}  # in Azure the identity-based settings replace it


def _infra_settings() -> set[str]:
    main = (INFRA / "main.bicep").read_text()
    block = main[main.index("appSettings: union({"):]
    block = block[:block.index("\n    })\n")]  # the settings, and those set only with a triage app
    names = set(re.findall(r"^\s+([A-Za-z0-9_]+):", block, re.M))
    function = (INFRA / "app" / "function.bicep").read_text()
    union = function[function.index("properties: union(appSettings, {"):]
    names |= set(re.findall(r"^\s+([A-Za-z0-9_]+):", union[:union.index("})")], re.M))
    return names


def _bicep_list(name: str) -> set[str]:
    main = (INFRA / "main.bicep").read_text()
    body = re.search(rf"var {name} = \[(.*?)\]", main, re.S)
    assert body, name
    return set(re.findall(r"'([^']+)'", body.group(1)))


def test_every_setting_is_set_by_infra_or_has_a_default():
    infra = _infra_settings()
    for setting in SETTINGS:
        if setting.name in LOCAL_ONLY:
            continue
        assert setting.name in infra or setting.default is not None, (
            f"{setting.name} has no default and infra/main.bicep does not set it")


def test_infra_sets_nothing_unknown():
    unknown = _infra_settings() - {s.name for s in SETTINGS} - PLATFORM
    assert not unknown, f"infra sets settings the code does not declare: {unknown}"


def test_settings_named_in_trigger_bindings_are_set_by_infra():
    infra = _infra_settings()
    for file in (ROOT / "functions").glob("*.py"):
        for name in re.findall(r'"%([A-Za-z0-9_]+)%"', file.read_text()):
            assert name in infra, f"{file.name} binds %{name}%, which infra does not set"


def test_secrets_come_from_key_vault():
    main = (INFRA / "main.bicep").read_text()
    vault = (INFRA / "app" / "keyvault.bicep").read_text()
    infra = _infra_settings()
    for setting in (s for s in SETTINGS if s.secret and s.name not in LOCAL_ONLY
                    and (s.default is None or s.name in infra)):
        m = re.search(rf"{setting.name}: '@Microsoft\.KeyVault\(SecretUri=\$\{{vault\.outputs"
                      rf"\.uri\}}secrets/([a-z0-9-]+)/\)'", main)
        assert m, f"{setting.name} is not a Key Vault reference"
        assert f"name: '{m.group(1)}'" in vault


def _triggered_queues(monkeypatch) -> set[str]:
    """Queue names of every queue trigger and output binding in function_app.app."""
    for name in [m for m in sys.modules if m == "function_app" or m.startswith("functions")]:
        monkeypatch.delitem(sys.modules, name)  # a fresh app: get_functions() runs once
    app = importlib.import_module("function_app").app
    return {b.queue_name for f in app.get_functions() for b in f.get_bindings()
            if b.type in ("queueTrigger", "queue")}


def _code_names(monkeypatch) -> tuple[set[str], set[str]]:
    queues = {tables.FETCH_QUEUE, tables.RELAY_QUEUE, tables.NOTIFY_QUEUE, tables.SIEM_QUEUE}
    triggered = _triggered_queues(monkeypatch)
    poison = {f"{q}-poison" for q in triggered if not q.endswith("-poison")}
    # every table the code declares (shared/storage/tables.py is the one place)
    table_names = {value for name, value in vars(tables).items()
                   if name.isupper() and isinstance(value, str) and not name.endswith("_QUEUE")}
    return queues | poison | triggered, table_names


def test_queue_and_table_names_agree_between_code_and_infra(monkeypatch):
    queues, table_names = _code_names(monkeypatch)
    assert _bicep_list("queueNames") == queues
    assert _bicep_list("tableNames") == table_names


def test_host_json_and_the_code_agree_on_message_encoding():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["queues"]["messageEncoding"] == "base64"
    # the code's own sends use base64 too (shared/storage/connection.py)
    assert "TextBase64EncodePolicy()" in (ROOT / "shared/storage/connection.py").read_text()


def test_identity_roles_and_runtime():
    rbac = (INFRA / "app" / "rbac.bicep").read_text()
    for role in ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
                 "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor
                 "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",  # Storage Table Data Contributor
                 "3913510d-42f4-4e42-8a64-420c390055eb"):  # Monitoring Metrics Publisher
        assert role in rbac
    function = (INFRA / "app" / "function.bicep").read_text()
    assert "runtime: { name: 'python', version: '3.11' }" in function
    assert "tier: 'FlexConsumption', name: 'FC1'" in function
    assert "allowSharedKeyAccess: false" in (INFRA / "app" / "storage.bicep").read_text()
    main = (INFRA / "main.bicep").read_text()
    for output in ("FUNCTION_APP_NAME", "FUNCTION_APP_URL", "CONSENT_REDIRECT_URI"):
        assert f"output {output} string" in main
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    params = set(re.findall(r"^param (\w+) ", main, re.M))
    assert set(parameters) <= params
    required = {p for p in params
                if not re.search(rf"^param {p} \w+ =", main, re.M)}
    assert required <= set(parameters) | {"location"}
