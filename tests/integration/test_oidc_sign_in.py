"""shared.tenants.oidc against the simulated Entra ID: authorize with PKCE, code exchange, and the
ID-token checks that decide which tenant signed in."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from shared.config import IdentitySettings
from shared.tenants.oidc import OpenIdClient, SignInError, digest, new_secret

REDIRECT = "https://mssp.example/api/consent/callback"


def _client(simulator, **identity) -> OpenIdClient:
    settings = IdentitySettings(
        client_id=simulator.config.client_id, client_secret=simulator.config.client_secret,
        authority_host=simulator.base_url, ca_bundle=str(simulator.config.ca_path),
        **identity)
    return OpenIdClient(settings, REDIRECT)


def _sign_in(simulator, client: OpenIdClient, tenant_id: str, path: str = "organizations",
             decision: str = "accept") -> tuple[dict, str, str]:
    """Open the authorize URL, press a button as `tenant_id`'s admin: (redirect query,
    verifier, nonce)."""
    nonce, verifier = new_secret(), new_secret()
    url = client.authorize_url(path, "st", nonce, verifier)
    ca = str(simulator.config.ca_path)
    page = requests.get(url, verify=ca, timeout=10)
    assert page.status_code == 200, page.text
    fields = {unescape(m.group(1)): unescape(m.group(2)) for m in re.finditer(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)}
    assert "code_verifier" not in fields and verifier not in page.text
    fields["signed_in_tenant"] = tenant_id
    r = requests.post(f"{simulator.base_url}{urlsplit(url).path}",
                      data={**fields, "decision": decision}, verify=ca, timeout=10,
                      allow_redirects=False)
    assert r.status_code == 302, r.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["Location"]).query).items()}
    return query, verifier, nonce


def test_sign_in_gives_a_validated_id_token_of_the_admins_tenant(simulator, sim):
    tenant = sim.add_tenant("Oidc Co", domain="oidc.example")
    client = _client(simulator)
    query, verifier, nonce = _sign_in(simulator, client, tenant["id"])
    assert query["state"] == "st" and "tenant" not in query and "admin_consent" not in query
    tokens = client.exchange("organizations", query["code"], verifier)
    claims = client.validate(tokens["id_token"], digest(nonce))
    assert claims["tid"] == tenant["id"]
    assert claims["iss"] == f"{simulator.base_url}/{tenant['id']}/v2.0"
    assert claims["aud"] == simulator.config.client_id
    assert claims["preferred_username"] == "admin@oidc.example"
    # the admin's acceptance is consent: the app now gets tokens for the tenant
    assert simulator.config.client_id in sim.tenant(tenant["id"])["consented_apps"]


def test_a_certificate_credential_redeems_the_code(simulator, sim):
    tenant = sim.add_tenant("Oidc Cert Co")
    client = _client(simulator, certificate_path=str(simulator.config.certificate_path))
    query, verifier, nonce = _sign_in(simulator, client, tenant["id"], path=tenant["id"])
    tokens = client.exchange(tenant["id"], query["code"], verifier)
    assert client.validate(tokens["id_token"], digest(nonce))["tid"] == tenant["id"]


def test_a_declined_sign_in_redirects_entras_error(simulator, sim):
    tenant = sim.add_tenant("Oidc Declines Co")
    query, _, _ = _sign_in(simulator, _client(simulator), tenant["id"], decision="cancel")
    assert query["error"] == "access_denied" and "code" not in query
    assert query["error_description"].startswith("AADSTS65004")


@pytest.mark.parametrize(("tamper", "words"), [
    ({"claims": {"nonce": "another-attempt"}}, "nonce"),
    ({"foreign_key": True}, "does not publish"),
    ({"foreign_key": "same_kid"}, "Signature verification failed"),
    ({"claims": {"aud": "11111111-2222-3333-4444-555555555555"}}, "Audience"),
    ({"claims": {"exp": 1_000_000_000}}, "(?i)expired"),
    ({"claims": {"nbf": 4_000_000_000}}, "(?i)not yet valid"),
    ({"drop": ["nonce"]}, "nonce"),
])
def test_id_tokens_that_are_not_for_this_sign_in_are_refused(simulator, sim, tamper, words):
    tenant = sim.add_tenant("Oidc Tamper Co")
    client = _client(simulator)
    query, verifier, nonce = _sign_in(simulator, client, tenant["id"])
    sim.tamper_next_id_token(**tamper)
    tokens = client.exchange("organizations", query["code"], verifier)
    with pytest.raises(SignInError, match=words) as caught:
        client.validate(tokens["id_token"], digest(nonce))
    assert caught.value.kind == "not_verified"


def test_a_token_naming_another_tenant_fails_the_issuer_check(simulator, sim):
    signed_in = sim.add_tenant("Oidc Signer Co")
    victim = sim.add_tenant("Oidc Victim Co")
    client = _client(simulator)
    query, verifier, nonce = _sign_in(simulator, client, signed_in["id"])
    sim.tamper_next_id_token(claims={"tid": victim["id"]})  # iss still names the signer
    tokens = client.exchange("organizations", query["code"], verifier)
    with pytest.raises(SignInError, match="issuer"):
        client.validate(tokens["id_token"], digest(nonce))


def test_keys_roll_over_and_the_cached_set_is_refetched(simulator, sim):
    tenant = sim.add_tenant("Oidc Rotation Co")
    client = _client(simulator)
    query, verifier, nonce = _sign_in(simulator, client, tenant["id"])
    client.validate(client.exchange("organizations", query["code"], verifier)["id_token"],
                    digest(nonce))  # caches the key set
    new_kid = sim.rotate_keys(keep_old=False)["kid"]
    query, verifier, nonce = _sign_in(simulator, client, tenant["id"])
    token = client.exchange("organizations", query["code"], verifier)["id_token"]
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    assert client.validate(token, digest(nonce))["tid"] == tenant["id"]


@pytest.mark.parametrize(("case", "kind", "code"), [
    ("replayed code", "replayed", 54005),
    ("expired code", "expired", 70008),
    ("wrong verifier", "not_verified", 50148),
    ("unknown code", "not_verified", 9002313),
    ("bad secret", "app_error", 7000215),
])
def test_the_code_exchange_fails_with_entras_errors(simulator, sim, case, kind, code):
    tenant = sim.add_tenant(f"Oidc Exchange {case}")
    client = _client(simulator)
    query, verifier, _ = _sign_in(simulator, client, tenant["id"])
    if case == "replayed code":
        client.exchange("organizations", query["code"], verifier)
    elif case == "expired code":
        sim.advance_clock(601)
    elif case == "wrong verifier":
        verifier = new_secret()
    elif case == "unknown code":
        query["code"] = "x" * 60
    elif case == "bad secret":
        client = _client(simulator)
        client.identity = IdentitySettings(
            client_id=simulator.config.client_id, client_secret="wrong",
            authority_host=simulator.base_url, ca_bundle=str(simulator.config.ca_path))
    with pytest.raises(SignInError) as caught:
        client.exchange("organizations", query["code"], verifier)
    assert (caught.value.kind, caught.value.code) == (kind, code)


def test_the_authorize_request_carries_pkce_nonce_and_admin_consent(simulator):
    client = _client(simulator)
    url = client.authorize_url("organizations", "s", "n" * 43, "v" * 43)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert urlsplit(url).path == "/organizations/oauth2/v2.0/authorize"
    assert query["response_type"] == "code" and query["prompt"] == "admin_consent"
    assert query["code_challenge_method"] == "S256" and "code_verifier" not in query
    assert query["scope"] == "openid profile https://api.securitycenter.microsoft.com/.default"
    assert query["nonce"] == "n" * 43 and "v" * 43 not in url
