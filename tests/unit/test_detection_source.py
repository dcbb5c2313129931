"""Graph's detectionSource in Defender for Endpoint's spelling, as Microsoft documents both
(the sources are named in shared/alerts/spelling.py): every Defender API value of the alerts
queue's table has its Graph member, an endpoint alert reads the same from either API, and
a member Defender has no name for passes through as Graph spells it."""

from __future__ import annotations

import pytest

from devtools.simulator.alerts import AlertFactory
from devtools.simulator.graph_alerts import from_mde
from shared.alerts.view import GRAPH, MDE, AlertView


@pytest.mark.parametrize("graph,defender", [
    ("microsoftDefenderForEndpoint", "WindowsDefenderAtp"),  # "EDR" in the portal
    ("antivirus", "WindowsDefenderAv"), ("smartScreen", "WindowsDefenderSmartScreen"),
    ("customTi", "CustomerTI"), ("customDetection", "CustomDetection"),
    ("automatedInvestigation", "AutomatedInvestigation"),
    ("microsoftThreatExperts", "ThreatExperts"), ("microsoft365Defender", "MTP"),
    ("microsoftDefenderForOffice365", "OfficeATP"),
    ("microsoftDefenderForIdentity", "AzureATP"), ("cloudAppSecurity", "MCAS"),
    # no Defender for Endpoint name: as Graph spells it
    ("azureAdIdentityProtection", "azureAdIdentityProtection"), ("manual", "manual"),
    ("microsoftDataLossPrevention", "microsoftDataLossPrevention"),
    ("microsoftSentinel", "microsoftSentinel"), ("unknown", "unknown"),
    ("somethingNewFromMicrosoft", "somethingNewFromMicrosoft")])
def test_a_graph_detection_source_reads_in_defenders_spelling(graph, defender):
    view = AlertView.of({"id": "a1", "detectionSource": graph}, GRAPH)
    assert view.detection_source == defender


@pytest.mark.parametrize("source", ["WindowsDefenderAtp", "WindowsDefenderAv",
                                    "WindowsDefenderSmartScreen", "CustomerTI",
                                    "CustomDetection", "AutomatedInvestigation", "OfficeATP",
                                    "AzureATP", "MCAS", "ThreatExperts"])
def test_an_endpoint_alert_reads_the_same_from_either_api(source):
    alert = {**AlertFactory("t", "contoso.example", seed=3).make(638_000_000_000_000_000),
             "detectionSource": source}
    mde, graph = AlertView.of(alert, MDE), AlertView.of(from_mde(alert), GRAPH)
    assert mde.detection_source == graph.detection_source == source
