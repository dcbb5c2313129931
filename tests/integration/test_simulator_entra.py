"""The simulated Entra ID through the real azure-identity (MSAL) code paths."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential

from tests.integration.sim_helpers import DEFENDER_SCOPE, secret_credential

REDIRECT = "https://mssp.example/api/consent/callback"


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_client_secret_credential_gets_a_token_for_a_consented_tenant(simulator, sim):
    tenant = sim.add_tenant("Secret Co", consent=[simulator.config.client_id])
    access = secret_credential(simulator, tenant["id"]).get_token(DEFENDER_SCOPE)
    claims = _claims(access.token)
    assert claims["tid"] == tenant["id"]
    assert claims["aud"] == "https://api.securitycenter.microsoft.com"
    assert claims["roles"] == ["Alert.Read.All"]
    assert claims["appid"] == simulator.config.client_id
    assert 3500 < claims["exp"] - claims["iat"] <= 3600
    # signed by the key the discovery document publishes
    jwks = requests.get(f"{simulator.base_url}/{tenant['id']}/discovery/v2.0/keys",
                        verify=str(simulator.config.ca_path), timeout=10).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    jwt.decode(access.token, key, algorithms=["RS256"],  # times follow the simulated clock
               audience="https://api.securitycenter.microsoft.com",
               options={"verify_iat": False, "verify_nbf": False, "verify_exp": False})


def test_certificate_credential_gets_a_token(simulator, sim):
    tenant = sim.add_tenant("Cert Co", consent=[simulator.config.client_id])
    credential = CertificateCredential(
        tenant["id"], simulator.config.client_id, str(simulator.config.certificate_path),
        authority=simulator.base_url, disable_instance_discovery=True,
        connection_verify=str(simulator.config.ca_path))
    claims = _claims(credential.get_token(DEFENDER_SCOPE).token)
    assert claims["tid"] == tenant["id"]
    assert claims["appidacr"] == "2"


def test_an_unregistered_certificate_is_refused(simulator, sim, tmp_path):
    import trustme

    stranger = trustme.CA().issue_cert("stranger.test", key_type=trustme.KeyType.RSA)
    pem = tmp_path / "stranger.pem"
    pem.write_bytes(stranger.private_key_pem.bytes() + stranger.cert_chain_pems[0].bytes())
    tenant = sim.add_tenant("Cert Co 2", consent=[simulator.config.client_id])
    credential = CertificateCredential(
        tenant["id"], simulator.config.client_id, str(pem), authority=simulator.base_url,
        disable_instance_discovery=True, connection_verify=str(simulator.config.ca_path))
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        credential.get_token(DEFENDER_SCOPE)


@pytest.mark.parametrize(("case", "code"), [
    ("no consent", "AADSTS700016"),
    ("bad secret", "AADSTS7000215"),
    ("no defender", "AADSTS500011"),
    ("unknown tenant", "Unable to get authority configuration"),
])
def test_tokens_come_only_from_the_right_tenant(simulator, sim, case, code):
    client_id = simulator.config.client_id
    secret = None
    if case == "no consent":
        tenant_id = sim.add_tenant("Stranger Co")["id"]
    elif case == "bad secret":
        tenant_id = sim.add_tenant("Typo Co", consent=[client_id])["id"]
        secret = "not-the-secret"
    elif case == "no defender":
        tenant_id = sim.add_tenant("No MDE Co", consent=[client_id], defender="none")["id"]
    else:
        tenant_id = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    with pytest.raises(ClientAuthenticationError, match=code):
        secret_credential(simulator, tenant_id, secret).get_token(DEFENDER_SCOPE)


def test_unknown_tenant_discovery_answers_aadsts90002(simulator):
    r = requests.get(f"{simulator.base_url}/3f2504e0-4f89-11d3-9a0c-0305e82c3301/v2.0/"
                     ".well-known/openid-configuration", verify=str(simulator.config.ca_path),
                     timeout=10)
    assert r.status_code == 400
    assert r.json()["error_codes"] == [90002]


def test_token_error_shape_and_common_endpoint(simulator, sim):
    url = f"{simulator.base_url}/common/oauth2/v2.0/token"
    r = requests.post(url, data={"grant_type": "client_credentials", "scope": DEFENDER_SCOPE,
                                 "client_id": simulator.config.client_id,
                                 "client_secret": simulator.config.client_secret},
                      verify=str(simulator.config.ca_path), timeout=10)
    body = r.json()
    assert r.status_code == 400
    assert set(body) >= {"error", "error_description", "error_codes", "timestamp",
                         "trace_id", "correlation_id"}
    assert body["error_codes"] == [9001023]
    assert body["error_description"].startswith("AADSTS9001023:")


def test_revoked_consent_stops_new_tokens(simulator, sim):
    tenant = sim.add_tenant("Leaving Co", consent=[simulator.config.client_id])
    secret_credential(simulator, tenant["id"]).get_token(DEFENDER_SCOPE)
    sim.revoke(tenant["id"], simulator.config.client_id)
    with pytest.raises(ClientAuthenticationError, match="AADSTS700016"):
        secret_credential(simulator, tenant["id"]).get_token(DEFENDER_SCOPE)


def _authorize(simulator, tenant: str, **params: str) -> requests.Response:
    base = {"client_id": simulator.config.client_id, "redirect_uri": REDIRECT,
            "response_type": "code", "scope": f"openid profile {DEFENDER_SCOPE}",
            "state": "s6", "nonce": "n6", "code_challenge": "c" * 43,
            "code_challenge_method": "S256"}
    return requests.get(f"{simulator.base_url}/{tenant}/oauth2/v2.0/authorize",
                        params={**base, **params}, verify=str(simulator.config.ca_path),
                        timeout=10, allow_redirects=False)


@pytest.mark.parametrize(("change", "code"), [
    ({"redirect_uri": "https://evil.example/steal"}, "AADSTS50011"),
    ({"client_id": "00000000-0000-0000-0000-000000000000"}, "AADSTS700016"),
])
def test_authorize_checks_client_and_redirect_before_redirecting(simulator, sim, change,
                                                                 code):
    r = _authorize(simulator, "organizations", **change)
    assert r.status_code == 400 and "Location" not in r.headers and code in r.text


@pytest.mark.parametrize(("change", "error"), [
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": "openid https://evil.example/.default"}, "invalid_scope"),
    ({"code_challenge_method": "S512"}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
])
def test_authorize_redirects_entras_errors(simulator, change, error):
    r = _authorize(simulator, "organizations", **change)
    query = parse_qs(urlsplit(r.headers["Location"]).query)
    assert query["error"] == [error] and query["state"] == ["s6"]
    assert query["error_description"][0].startswith("AADSTS")


def test_authorize_page_preselects_a_named_tenant_and_never_defaults_one(simulator, sim):
    named = sim.add_tenant("Preselected Co", domain="preselected.example")
    page = _authorize(simulator, "preselected.example")
    assert "admin@preselected.example" in page.text and 'name="signed_in_tenant" value="' \
        f'{named["id"]}"' in page.text
    assert "<select" not in page.text
    page = _authorize(simulator, "organizations", state="st<a>te&1")
    assert '<option value="">Choose an organization</option>' in page.text
    assert "st&lt;a&gt;te&amp;1" in page.text  # escaped in the hidden field
    r = requests.post(f"{simulator.base_url}/organizations/oauth2/v2.0/authorize",
                      data={"client_id": simulator.config.client_id, "redirect_uri": REDIRECT,
                            "response_type": "code", "scope": "openid", "state": "s7",
                            "decision": "accept", "signed_in_tenant": ""},
                      verify=str(simulator.config.ca_path), timeout=10,
                      allow_redirects=False)
    assert r.status_code == 400 and "Location" not in r.headers


def test_organizations_discovery_points_at_the_alias_with_a_per_tenant_issuer(simulator):
    r = requests.get(f"{simulator.base_url}/organizations/v2.0/.well-known/"
                     "openid-configuration", verify=str(simulator.config.ca_path), timeout=10)
    body = r.json()
    assert body["token_endpoint"] == f"{simulator.base_url}/organizations/oauth2/v2.0/token"
    assert body["issuer"] == f"{simulator.base_url}/{{tenantid}}/v2.0"
