"""Which signed-in tenant an invitation may register (shared.tenants.consent_decision)."""

from __future__ import annotations

import pytest

from shared.model import TenantStatus
from shared.tenants.consent_decision import Decision, decide

T = "aa3c1166-c1a2-4c1b-9f0e-2b8d4c6e8f10"
OTHER = "0f6c2a9e-3b1d-4e5f-8a7b-9c0d1e2f3a4b"
HOME = "0b7e3f3a-2d4c-4b8e-9f61-8d2c1a5e4f90"
KNOWN = [TenantStatus.PAUSED, TenantStatus.OFFBOARDED, TenantStatus.CONSENT_REVOKED,
         TenantStatus.UNAVAILABLE]


def _decide(tenant=T, expected="", reconsent="", registered=None, home=HOME, allow=False):
    return decide(tenant, expected_tenant=expected, reconsent_for=reconsent,
                  registered=registered, home_tenant=home, allow_home_tenant=allow)


def test_an_open_invitation_registers_a_new_tenant():
    assert _decide() == Decision.REGISTER
    assert _decide(expected=T) == Decision.REGISTER
    assert _decide(expected="northwind.example") == Decision.REGISTER  # resolved later


@pytest.mark.parametrize("status", KNOWN)
def test_a_known_tenant_comes_back_only_through_its_reconsent_invitation(status):
    assert _decide(registered=status) == Decision.KNOWN_TENANT
    assert _decide(registered=status, expected=T) == Decision.KNOWN_TENANT
    assert _decide(registered=status, expected=T, reconsent=T) == Decision.REACTIVATE
    assert _decide(registered=status, reconsent=OTHER) == Decision.WRONG_TENANT


def test_an_active_tenant_is_left_alone():
    assert _decide(registered=TenantStatus.ACTIVE) == Decision.ALREADY_ACTIVE
    assert _decide(registered=TenantStatus.ACTIVE, reconsent=T) == Decision.ALREADY_ACTIVE


def test_the_home_tenant_only_when_allowed():
    assert _decide(tenant=HOME) == Decision.HOME_TENANT
    assert _decide(tenant=HOME, registered=TenantStatus.ACTIVE) == Decision.HOME_TENANT
    assert _decide(tenant=HOME, allow=True) == Decision.REGISTER
    assert _decide(tenant=HOME, home="") == Decision.REGISTER  # MSSP_TENANT_ID unset


def test_an_invitation_naming_another_tenant():
    assert _decide(expected=OTHER) == Decision.WRONG_TENANT
    assert _decide(expected=OTHER, registered=TenantStatus.ACTIVE) == Decision.WRONG_TENANT
    assert _decide(reconsent=OTHER) == Decision.WRONG_TENANT
