"""Token signing and checking: access tokens the simulator issues, client assertions it gets."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

DEFENDER_AUDIENCES = ("https://api.securitycenter.microsoft.com",
                      "https://api.security.microsoft.com")
GRAPH_AUDIENCE = "https://graph.microsoft.com"
US_GRAPH_AUDIENCE = "https://graph.microsoft.us"  # US Government clouds' Graph host
# WindowsDefenderATP's appId: a scope may name the resource by it too
DEFENDER_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"


class AssertionRejected(ValueError):
    """A client assertion Entra would refuse; `code` is the AADSTS number."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def resource_of(scope: str) -> str | None:
    """`https://api.securitycenter.microsoft.com/.default` to its audience, or None."""
    if not scope.endswith("/.default"):
        return None
    resource = scope[: -len("/.default")].rstrip("/")
    if resource in DEFENDER_AUDIENCES or resource == DEFENDER_APP_ID:
        return DEFENDER_AUDIENCES[0] if resource == DEFENDER_APP_ID else resource
    if resource in (GRAPH_AUDIENCE, US_GRAPH_AUDIENCE):
        return resource
    if resource == "https://securitycenter.onmicrosoft.com/windowsatpservice":
        return DEFENDER_AUDIENCES[0]
    return None


def thumbprints(cert_pem: bytes) -> tuple[str, str, Any]:
    """(x5t, x5t#S256, public key) of a PEM certificate, as MSAL puts them in headers."""
    cert = x509.load_pem_x509_certificate(cert_pem)

    def b64(digest: bytes) -> str:
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    return (b64(cert.fingerprint(hashes.SHA1())),  # noqa: S303 - x5t is SHA-1 by definition
            b64(cert.fingerprint(hashes.SHA256())), cert.public_key())


class Signer:
    """The simulated Entra's signing keys; publishes a JWKS and verifies what it signed.

    Like Entra it publishes more than one key: after `rotate()` the new key signs and the
    old one stays in the JWKS (unless dropped), so a verifier must pick by `kid`.
    """

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.rotate()

    @property
    def key(self) -> rsa.RSAPrivateKey:
        return self.keys[self.kid]

    def rotate(self, keep_old: bool = True) -> str:
        """A new signing key; the old ones stay published when `keep_old`."""
        if not keep_old:
            self.keys.clear()
        self.kid = uuid.uuid4().hex
        self.keys[self.kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.kid

    def jwks(self) -> dict[str, Any]:
        def jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
            public = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            return {**public, "kid": kid, "use": "sig", "alg": "RS256"}

        return {"keys": [jwk(kid, key) for kid, key in reversed(self.keys.items())]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256",
                          headers={"kid": self.kid, "typ": "JWT"})

    def verify(self, token: str, audiences: tuple[str, ...], now: float) -> dict[str, Any]:
        """Claims of a valid token; jwt.InvalidTokenError otherwise.

        Times are checked against the simulated clock `now`, not the wall clock.
        """
        kid = jwt.get_unverified_header(token).get("kid")
        if kid not in self.keys:
            raise jwt.InvalidSignatureError("unknown signing key")
        claims = jwt.decode(token, self.keys[kid].public_key(), algorithms=["RS256"],
                            audience=list(audiences),
                            options={"verify_exp": False, "verify_nbf": False,
                                     "verify_iat": False, "require": ["exp", "nbf", "tid"]})
        if claims["exp"] <= now:
            raise jwt.ExpiredSignatureError("token expired")
        if claims["nbf"] > now + 300:
            raise jwt.ImmatureSignatureError("token not yet valid")
        return claims


def private_key_pem(signer: Signer) -> bytes:
    return signer.key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())


def verify_assertion(assertion: str, certificates: dict[str, Any], client_id: str,
                     token_endpoint: str, now: float) -> None:
    """Check a certificate credential's client_assertion as Entra does, or raise."""
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        raise AssertionRejected(50027, "JWT token is invalid or malformed.") from None
    key = certificates.get((header.get("x5t#S256") or "").rstrip("=")) or certificates.get(
        (header.get("x5t") or "").rstrip("="))
    if key is None:
        raise AssertionRejected(700027, "Client assertion contains an invalid signature. "
                              "[Reason - The key was not found.]")
    try:
        claims = jwt.decode(assertion, key, algorithms=["RS256", "PS256"],
                            audience=token_endpoint,
                            options={"verify_exp": False, "verify_nbf": False})
    except jwt.InvalidAudienceError:
        raise AssertionRejected(50012,
                              "Client assertion audience claim does not match Realm "
                              f"issuer. Expected '{token_endpoint}'.") from None
    except jwt.InvalidTokenError:
        raise AssertionRejected(700027, "Client assertion failed signature validation.") from None
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AssertionRejected(700021, "Client assertion application identifier doesn't "
                              "match 'client_id' parameter.")
    if not (claims.get("nbf", 0) - 300 <= now <= claims.get("exp", 0) + 300):
        raise AssertionRejected(700024, "Client assertion is not within its valid time range.")
