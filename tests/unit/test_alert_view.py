"""The alert view over both schemas (Defender for Endpoint `/api/alerts`, Graph
alerts_v2): canonical values, products, evidence rows, and no exception from any document."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.alerts.view import (
    GRAPH,
    MDE,
    AlertView,
    event_alert,
    mde_shaped,
    product_name,
    short_product,
)
from shared.ingest.events import SUMMARY_FIELDS, summary
from tests.alert_docs import (
    ALERT_ID,
    HOSTILE,
    TENANT,
    entra_alert,
    graph_alert,
    identity_alert,
    mde_alert,
    office_alert,
)


def test_a_graph_alert_reads_in_the_hubs_canonical_spelling():
    view = AlertView.of(graph_alert(), GRAPH)
    assert (view.schema, view.id, view.provider_id) == (GRAPH, ALERT_ID, ALERT_ID)
    assert (view.severity, view.status) == ("Low", "New")
    assert (view.classification, view.determination) == ("TruePositive", "Malware")
    assert view.product == "Microsoft Defender for Endpoint"
    assert view.service_source == "microsoftDefenderForEndpoint"
    assert view.detection_source == "WindowsDefenderAv"
    assert view.recommended_action == "Collect artifacts and determine scope"
    assert (view.created, view.last_update) == ("2021-04-16T12:05:07.4130523Z",
                                                "2021-05-13T12:25:17.3933333Z")
    assert (view.first_activity, view.last_activity, view.resolved) == (
        "2021-04-16T12:04:23.6166672Z", "2021-04-16T12:04:23.6166672Z", None)
    assert (view.device_name, view.device_id, view.device_group) == (
        "tempmachine1", "505d70d89cfa3428f7aac7d2eb3a64c60fd3d843", "UnassignedGroup")
    assert view.user == "tempmachine1\\administrator"
    assert view.mitre_techniques == ("T1564.001",)
    assert view.incident_id == 28282  # Defender's incident ids are numbers
    assert view.link == f"https://security.microsoft.com/alerts/{ALERT_ID}?tid={TENANT}"
    assert [e.entity_type for e in view.evidence] == ["User", "Process", "File", "Ip", "Url"]
    process = view.evidence[1]
    assert (process.file_name, process.command_line, process.detection_status,
            process.verdict) == ("wscript.exe", "wscript.exe //B hidden.vbs", "Detected",
                                 "Suspicious")
    assert view.evidence[2].sha256.startswith("8a7b")
    assert view.evidence[0].user == "administrator@contoso.com"
    assert [(c.text, c.by) for c in view.comments] == [("looking", "secop@contoso.com")]


def test_an_mde_alert_reads_as_it_is():
    doc = mde_alert()
    view = AlertView.of(doc, MDE)
    assert (view.severity, view.status, view.classification) == ("Low", "New", "TruePositive")
    assert view.product == "Microsoft Defender for Endpoint" and view.schema == MDE
    assert view.link == f"https://security.microsoft.com/alerts/{ALERT_ID}?tid={TENANT}"
    assert mde_shaped(doc, MDE) is doc  # what is built from it stays byte for byte
    assert view.evidence_count == 5 and view.user == "tempmachine1\\administrator"


def test_the_twins_have_the_same_canonical_fields():
    mde, graph = mde_alert(), graph_alert()
    fields = AlertView.of(graph, GRAPH).fields()
    for name in SUMMARY_FIELDS:
        assert fields[name] == mde.get(name), name
    assert fields["evidence"] == mde["evidence"]
    assert summary(graph, schema=GRAPH) == {**summary(mde), "schema": GRAPH}
    assert summary(mde)["product"] == "Microsoft Defender for Endpoint"
    assert summary(mde)["serviceSource"] == "microsoftDefenderForEndpoint"


@pytest.mark.parametrize(("doc", "product", "source"), [
    (office_alert(), "Microsoft Defender for Office 365", "microsoftDefenderForOffice365"),
    (identity_alert(), "Microsoft Defender for Identity", "microsoftDefenderForIdentity"),
    (entra_alert(), "Microsoft Entra ID Protection", "microsoftEntraIdProtection"),
])
def test_other_products(doc: dict[str, Any], product: str, source: str):
    view = AlertView.of(doc, GRAPH)
    assert (view.product, view.service_source) == (product, source)
    assert view.severity in ("Low", "Medium", "High")
    assert summary(doc, schema=GRAPH)["product"] == product


def test_evidence_of_other_products_as_uniform_rows():
    office = AlertView.of(office_alert(), GRAPH)
    message, mailbox, url = office.evidence
    assert (message.entity_type, message.ip, message.url, message.user_principal_name,
            message.verdict) == ("MailMessage", "198.51.100.23", "https://phish.example/login",
                                 "pat@contoso.com", "Malicious")
    assert (mailbox.entity_type, mailbox.user) == ("Mailbox", "pat@contoso.com")
    assert url.url == "https://phish.example/login"
    assert (office.status, office.classification, office.determination) == (
        "InProgress", None, None)  # Graph's "unknown": not classified
    identity = AlertView.of(identity_alert(), GRAPH)
    assert (identity.status, identity.classification, identity.determination) == (
        "Resolved", "FalsePositive", "NotMalicious")
    assert identity.device_name == "dc01.contoso.local" and identity.device_id is None
    assert identity.user == "CONTOSO\\jdoe" and identity.resolved == "2026-11-30T09:30:00Z"
    assert [e.entity_type for e in identity.evidence] == ["User", "Ip"]
    entra = AlertView.of(entra_alert(), GRAPH)
    assert entra.detection_source == "azureAdIdentityProtection"  # no Defender name: as is
    assert entra.device_name is None and entra.user == "kim"


def test_unknown_and_new_values_pass_through_as_text():
    doc = graph_alert(severity="catastrophic", status="escalatedToVendor",
                      classification="newKind", determination="aiJailbreak",
                      serviceSource="microsoftDefenderForQuantum")
    doc["evidence"].append({"@odata.type": "#microsoft.graph.security.quantumEvidence",
                            "verdict": "entangled"})
    view = AlertView.of(doc, GRAPH)
    assert (view.severity, view.status, view.classification, view.determination) == (
        "catastrophic", "escalatedToVendor", "newKind", "aiJailbreak")
    assert view.product == "microsoftDefenderForQuantum"
    assert (view.evidence[-1].entity_type, view.evidence[-1].verdict) == ("Quantum",
                                                                          "Entangled")
    unknown = AlertView.of(graph_alert(severity="unknown", status="unknownFutureValue"), GRAPH)
    assert (unknown.severity, unknown.status) == ("UnSpecified", "Unknown")


MALFORMED: list[Any] = [
    {}, {"id": 5}, {"evidence": "not a list"}, {"evidence": [None, 3, "x", []]},
    {"evidence": [{"@odata.type": 7, "fileDetails": "x", "userAccount": [1],
                   "imageFile": None, "urls": "u"}]},
    {"severity": 3, "status": ["new"], "classification": {"a": 1}, "mitreTechniques": "T1",
     "comments": 4, "incidentId": True, "tenantId": None, "alertWebUrl": 12},
    {"comments": [None, {"comment": {"x": 1}}], "incidentId": "12a", "serviceSource": ""},
    {"mitreTechniques": [None, 1, "T1"], "incidentId": "9" * 40, "relatedUser": "bob"},
]


@pytest.mark.parametrize("doc", MALFORMED)
@pytest.mark.parametrize("schema", [MDE, GRAPH])
def test_no_document_raises(doc: Any, schema: str):
    view = AlertView.of(copy.deepcopy(doc), schema)
    fields = view.fields()
    assert set(SUMMARY_FIELDS) <= set(fields)
    summary({"id": "x", **doc}, schema=schema)


def test_hostile_text_is_kept_as_text():
    doc = graph_alert(title=HOSTILE, description=HOSTILE)
    doc["evidence"][2]["processCommandLine"] = HOSTILE
    doc["alertWebUrl"] = "javascript:alert(1)"  # not a portal link: the computed one
    view = AlertView.of(doc, GRAPH)
    assert view.title == HOSTILE and view.evidence[1].command_line == HOSTILE
    assert view.link.startswith("https://security.microsoft.com/alerts/")


def test_an_unknown_schema_is_a_programming_error():
    with pytest.raises(ValueError, match="schema"):
        AlertView.of({}, "splunk")


def test_product_names():
    assert product_name(None) == product_name("") == "Microsoft Defender for Endpoint"
    assert short_product("Microsoft Defender for Endpoint") == "Defender for Endpoint"
    assert short_product("App governance") == "App governance"


def test_an_events_alert_through_the_view():
    graph = graph_alert()
    # the stored graph alert, copied whole into a feed entry
    fields, product, schema = event_alert({"schema": GRAPH, "alert": graph})
    assert fields["severity"] == "Low" and schema == GRAPH
    assert product == "Microsoft Defender for Endpoint"
    # its summary: in the canonical names already
    brief = summary(office_alert(), schema=GRAPH)
    fields, product, schema = event_alert({"schema": GRAPH, "alert": brief})
    assert fields is brief and product == "Microsoft Defender for Office 365"
    # an event from before the schema was kept
    fields, product, schema = event_alert({"alert": mde_alert()})
    assert (schema, product, fields["severity"]) == (MDE, "Microsoft Defender for Endpoint",
                                                     "Low")
