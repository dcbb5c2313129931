"""Helpers for tests that talk to the simulator with the real client libraries."""

from __future__ import annotations

from typing import Any

import requests
from azure.identity import ClientSecretCredential

from devtools.simulator.server import Simulator

DEFENDER_SCOPE = "https://api.securitycenter.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def secret_credential(simulator: Simulator, tenant_id: str, secret: str | None = None
                      ) -> ClientSecretCredential:
    return ClientSecretCredential(
        tenant_id, simulator.config.client_id, secret or simulator.config.client_secret,
        authority=simulator.base_url, disable_instance_discovery=True,
        connection_verify=str(simulator.config.ca_path))


def token(simulator: Simulator, tenant_id: str) -> str:
    return secret_credential(simulator, tenant_id).get_token(DEFENDER_SCOPE).token


def graph_token(simulator: Simulator, tenant_id: str) -> str:
    return secret_credential(simulator, tenant_id).get_token(GRAPH_SCOPE).token


def get_graph(simulator: Simulator, bearer: str, url: str = "/v1.0/security/alerts_v2",
              timeout: float = 30, **params: Any) -> requests.Response:
    """A Graph call: a path on the simulator, or a whole URL (a nextLink, followed as is)."""
    full = url if url.startswith("https://") else f"{simulator.base_url}{url}"
    return requests.get(full, params=params or None, timeout=timeout,
                        headers={"Authorization": f"Bearer {bearer}"},
                        verify=str(simulator.config.ca_path))


def get_alerts(simulator: Simulator, bearer: str, path: str = "/api/alerts",
               timeout: float = 30, **params: Any) -> requests.Response:
    return requests.get(f"{simulator.base_url}{path}", params=params, timeout=timeout,
                        headers={"Authorization": f"Bearer {bearer}"},
                        verify=str(simulator.config.ca_path))
