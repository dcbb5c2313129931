"""The ingest pipeline with Microsoft Graph at the simulator, and the Graph roles a
tenant grants: what the alert and incident triage tests through Graph share."""

from __future__ import annotations

import pytest

GRAPH = "https://graph.microsoft.com"
READ_WRITE = {GRAPH: ["SecurityAlert.ReadWrite.All", "SecurityIncident.ReadWrite.All"]}
READ_ONLY = {GRAPH: ["SecurityAlert.Read.All", "SecurityIncident.Read.All"]}


@pytest.fixture
def graph_pipeline(pipeline):
    """The `pipeline` fixture (ingest_fixtures.py) fetching Graph from the simulator."""
    return pipeline.with_settings(GRAPH_BASE_URL=pipeline.simulator.base_url)
