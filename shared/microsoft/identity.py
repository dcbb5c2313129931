"""Tokens for customer tenants through azure-identity, and what token errors mean.

One credential per tenant is kept for the life of the process (azure-identity caches the
token inside it), so a worker takes a new token about once an hour per tenant, not once
per invocation.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential, ClientSecretCredential

from shared.config import IdentitySettings
from shared.model import TenantStatus

_AADSTS = re.compile(r"AADSTS(\d+)")

# AADSTS code -> (tenant status, reason); None status: the MSSP app itself is broken
TENANT_ERRORS: dict[int, tuple[TenantStatus, str]] = {
    700016: (TenantStatus.CONSENT_REVOKED, "app_not_found_in_tenant"),
    7000229: (TenantStatus.CONSENT_REVOKED, "no_service_principal"),
    65001: (TenantStatus.CONSENT_REVOKED, "consent_missing"),
    90002: (TenantStatus.UNAVAILABLE, "tenant_not_found"),
    500011: (TenantStatus.UNAVAILABLE, "no_defender"),
    650052: (TenantStatus.UNAVAILABLE, "no_defender"),
}
APP_ERRORS = {7000215: "bad_client_secret", 70002: "bad_client_secret",
              7000222: "client_secret_expired", 700027: "bad_client_certificate",
              700024: "client_assertion_expired", 700011: "app_not_found",
              7000218: "no_client_credential"}


class TokenError(RuntimeError):
    """A token could not be had; `status` says what it means for the tenant, if anything."""

    def __init__(self, message: str, code: int | None, status: TenantStatus | None,
                 reason: str, app_wide: bool = False) -> None:
        super().__init__(message)
        self.code, self.status, self.reason, self.app_wide = code, status, reason, app_wide


def classify(exc: Exception) -> TokenError:
    """Map an azure-identity failure to the tenant's fate (or an app-wide problem)."""
    text = str(exc)
    if "Unable to get authority configuration" in text:  # discovery answered AADSTS90002
        return TokenError(text, 90002, TenantStatus.UNAVAILABLE, "tenant_not_found")
    m = _AADSTS.search(text)
    code = int(m.group(1)) if m else None
    if code in TENANT_ERRORS:
        status, reason = TENANT_ERRORS[code]
        return TokenError(text, code, status, reason)
    if code in APP_ERRORS:
        return TokenError(text, code, None, APP_ERRORS[code], app_wide=True)
    return TokenError(text, code, None, f"token_error_{code}" if code else "token_error")


@dataclass(frozen=True)
class _Key:
    tenant_id: str
    authority: str


class Tokens:
    """Per-tenant credentials, created once and reused across invocations."""

    def __init__(self, settings: IdentitySettings) -> None:
        self.settings = settings
        self._credentials: dict[_Key, TokenCredential] = {}
        self._lock = threading.Lock()

    def _credential(self, tenant_id: str) -> TokenCredential:
        key = _Key(tenant_id, self.settings.authority_host)
        with self._lock:
            credential = self._credentials.get(key)
            if credential is None:
                options = {"authority": self.settings.authority_host,
                           "disable_instance_discovery": True}
                if self.settings.ca_bundle:
                    options["connection_verify"] = self.settings.ca_bundle
                if self.settings.certificate_path:
                    credential = CertificateCredential(
                        tenant_id, self.settings.client_id, self.settings.certificate_path,
                        **options)
                else:
                    credential = ClientSecretCredential(
                        tenant_id, self.settings.client_id, self.settings.client_secret or "",
                        **options)
                self._credentials[key] = credential
            return credential

    def token(self, tenant_id: str, scope: str | None = None) -> str:
        """An access token for the tenant (the Defender API unless `scope` says otherwise);
        TokenError if none can be had."""
        try:
            return self._credential(tenant_id).get_token(
                scope or f"{self.settings.defender_resource}/.default").token
        except ClientAuthenticationError as exc:
            raise classify(exc) from exc
        except ValueError as exc:  # MSAL's discovery errors
            raise classify(exc) from exc

    def forget(self, tenant_id: str) -> None:
        """Drop a cached token (after a 401), so the next call asks Entra again."""
        with self._lock:
            self._credentials.pop(_Key(tenant_id, self.settings.authority_host), None)


_shared: dict[IdentitySettings, Tokens] = {}


def tokens_for(settings: IdentitySettings) -> Tokens:
    """The process-wide Tokens for these settings (credentials outlive invocations)."""
    if settings not in _shared:
        _shared[settings] = Tokens(settings)
    return _shared[settings]
