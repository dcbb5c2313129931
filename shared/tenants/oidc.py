"""OpenID Connect sign-in of a customer's administrator (authorization code + PKCE).

Entra's redirect proves nothing by itself: the tenant is the `tid` of an ID token that we
got for our own code, over TLS, and validated ourselves (RS256 signature with a key from
the issuer's JWKS, issuer for that `tid`, audience, nonce, times).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from shared.config import IdentitySettings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LEEWAY_SECONDS = 120  # clock skew allowed on exp, nbf, iat
CACHE_SECONDS = 24 * 3600  # discovery documents and key sets are refreshed daily
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "tid", "nonce"]


class SignInError(Exception):
    """The sign-in could not be completed. `kind`: expired | replayed | not_verified |
    app_error (our own credentials) | unavailable; `code` the AADSTS number if any."""

    def __init__(self, kind: str, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.code = kind, code


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def new_secret() -> str:
    """A code_verifier or nonce: 43 URL-safe characters from 32 random bytes."""
    return secrets.token_urlsafe(32)


def pkce_challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode()).digest())


def digest(nonce: str) -> str:
    """What is stored of a nonce: its SHA-256, enough to compare with the token's."""
    return hashlib.sha256(nonce.encode()).hexdigest()


@dataclass(frozen=True)
class _Certificate:
    key: Any
    x5t: str
    x5t_s256: str


class OpenIdClient:
    """Authorize URL, code exchange and ID-token validation for the MSSP's app.

    One per process: discovery documents and key sets are cached; an unknown `kid` makes
    it fetch the key set again once (Entra rolls its keys over)."""

    def __init__(self, identity: IdentitySettings, redirect_uri: str,
                 timeout: tuple[float, float] = (10, 30)) -> None:
        self.identity, self.redirect_uri, self.timeout = identity, redirect_uri, timeout
        self.session = requests.Session()
        self._lock = threading.Lock()
        self._metadata: dict[str, tuple[float, dict[str, Any]]] = {}
        self._keys: dict[str, tuple[float, dict[str, jwt.PyJWK]]] = {}

    @property
    def authority(self) -> str:
        return self.identity.authority_host.rstrip("/")

    def scope(self) -> str:
        return f"openid profile {self.identity.defender_resource}/.default"

    def authorize_url(self, tenant: str, state: str, nonce: str, verifier: str) -> str:
        """Sign-in with admin consent for the Defender permission, in one redirect."""
        query = urlencode({"client_id": self.identity.client_id, "response_type": "code",
                           "redirect_uri": self.redirect_uri, "response_mode": "query",
                           "scope": self.scope(), "state": state, "nonce": nonce,
                           "code_challenge": pkce_challenge(verifier),
                           "code_challenge_method": "S256", "prompt": "admin_consent"})
        return f"{self.identity.browser_authority}/{tenant}/oauth2/v2.0/authorize?{query}"

    # HTTP ---------------------------------------------------------------------------------
    def _verify(self) -> str | bool:
        return self.identity.ca_bundle or True

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self.session.get(url, timeout=self.timeout, verify=self._verify())
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SignInError("unavailable", f"{url.split('?')[0]}: {exc}"[:300]) from None
        if not isinstance(body, dict):
            raise SignInError("unavailable", f"{url}: not a JSON object")
        return body

    # the code exchange -------------------------------------------------------------------
    @cached_property
    def _certificate(self) -> _Certificate:
        with open(self.identity.certificate_path or "", "rb") as pem_file:
            pem = pem_file.read()
        cert = x509.load_pem_x509_certificate(pem)
        return _Certificate(
            serialization.load_pem_private_key(pem, password=None),
            _b64(cert.fingerprint(hashes.SHA1())),  # noqa: S303 - x5t is SHA-1 by definition
            _b64(cert.fingerprint(hashes.SHA256())))

    def _client_credentials(self, endpoint: str) -> dict[str, str]:
        if not self.identity.certificate_path:
            return {"client_secret": self.identity.client_secret or ""}
        cert, now = self._certificate, int(time.time())
        assertion = jwt.encode(
            {"aud": endpoint, "iss": self.identity.client_id, "sub": self.identity.client_id,
             "jti": str(uuid.uuid4()), "nbf": now, "iat": now, "exp": now + 600},
            cert.key, algorithm="RS256",
            headers={"x5t": cert.x5t, "x5t#S256": cert.x5t_s256, "typ": "JWT"})
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}

    def exchange(self, tenant: str, code: str, verifier: str) -> dict[str, Any]:
        """The token response for our code (it holds `id_token`); SignInError otherwise."""
        endpoint = f"{self.authority}/{tenant}/oauth2/v2.0/token"
        form = {"grant_type": "authorization_code", "client_id": self.identity.client_id,
                "code": code, "redirect_uri": self.redirect_uri, "code_verifier": verifier,
                "scope": self.scope(), **self._client_credentials(endpoint)}
        try:
            response = self.session.post(endpoint, data=form, timeout=self.timeout,
                                         verify=self._verify())
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SignInError("unavailable", f"token endpoint: {exc}"[:300]) from None
        if response.status_code == 200 and isinstance(body, dict) and body.get("id_token"):
            return body
        codes = body.get("error_codes") if isinstance(body, dict) else None
        number = codes[0] if isinstance(codes, list) and codes else None
        error = body.get("error", "") if isinstance(body, dict) else ""
        kind = {70008: "expired", 54005: "replayed"}.get(number or 0, (
            "not_verified" if error == "invalid_grant" else "app_error" if error in (
                "invalid_client", "unauthorized_client") else "unavailable"))
        raise SignInError(kind, f"token endpoint: {error or response.status_code}"
                          f"{f' (AADSTS{number})' if number else ''}", number)

    # the ID token -------------------------------------------------------------------------
    def _metadata_for(self, tenant_id: str) -> dict[str, Any]:
        with self._lock:
            cached = self._metadata.get(tenant_id)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        metadata = self._get_json(
            f"{self.authority}/{tenant_id}/v2.0/.well-known/openid-configuration")
        with self._lock:
            self._metadata[tenant_id] = (time.monotonic(), metadata)
        return metadata

    def _signing_key(self, jwks_uri: str, kid: str) -> jwt.PyJWK:
        with self._lock:
            cached = self._keys.get(jwks_uri)
        if cached and kid in cached[1] and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1][kid]
        keys: dict[str, jwt.PyJWK] = {}  # refetched: new, expired, or a key rolled over
        for jwk in self._get_json(jwks_uri).get("keys", []):
            if isinstance(jwk, dict) and jwk.get("kty") == "RSA" and jwk.get("kid") and (
                    jwk.get("use", "sig") == "sig"):
                try:
                    keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256")
                except jwt.PyJWTError:
                    continue
        with self._lock:
            self._keys[jwks_uri] = (time.monotonic(), keys)
        if kid not in keys:
            raise SignInError("not_verified", "the ID token is signed by a key the issuer "
                              "does not publish")
        return keys[kid]

    def validate(self, id_token: str, nonce_digest: str) -> dict[str, Any]:
        """The claims of an ID token issued to us for this attempt; SignInError else."""
        try:
            header = jwt.get_unverified_header(id_token)
            unverified = jwt.decode(id_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise SignInError("not_verified", "the ID token is malformed") from None
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise SignInError("not_verified", "the ID token is not RS256 with a kid")
        try:
            tenant_id = str(uuid.UUID(str(unverified.get("tid", ""))))
        except ValueError:
            raise SignInError("not_verified", "the ID token names no tenant") from None
        issuer = f"{self.authority}/{tenant_id}/v2.0"
        metadata = self._metadata_for(tenant_id)
        if str(metadata.get("issuer", "")).replace("{tenantid}", tenant_id) != issuer:
            raise SignInError("not_verified", "the tenant's discovery names another issuer")
        key = self._signing_key(str(metadata.get("jwks_uri", "")), header["kid"])
        try:
            claims = jwt.decode(id_token, key, algorithms=["RS256"],
                                audience=self.identity.client_id, issuer=issuer,
                                leeway=LEEWAY_SECONDS, options={"require": REQUIRED_CLAIMS})
        except jwt.PyJWTError as exc:
            raise SignInError("not_verified", f"the ID token is not valid: {exc}") from None
        if str(claims["tid"]).lower() != tenant_id or not hmac.compare_digest(
                digest(str(claims["nonce"])), nonce_digest):
            raise SignInError("not_verified", "the ID token is not for this sign-in (nonce)")
        return {**claims, "tid": tenant_id}
