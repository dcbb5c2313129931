"""Every operation of /api/openapi.json fuzzed on the running app (schemathesis, fixed
seed, bounded examples), with the function key and without: no answer is a 5xx, and
every answer is one the document lists, with its content type and schema.

Nothing is excluded: the rule test endpoints only keep their email in MailOutbox here
(MAIL_TRANSPORT=none). The portal is fuzzed as a stranger and signed in (App Service's
principal header); half of its form posts carry a valid CSRF token and Origin.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from html import unescape

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.model import Tenant
from tests.e2e.conftest import FUNCTION_KEY
from tests.e2e.test_portal_browser import principal

pytestmark = pytest.mark.usefixtures("global_rules_removed")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES = {"keyed": 8, "signed in": 6, "no key": 2}  # per operation and generation mode


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    phases=[Phase.explicit, Phase.generate],  # no shrinking: report as found
                    suppress_health_check=list(HealthCheck), print_blob=False)


def _known(case: schemathesis.Case, tenant_id: str, rule_ids: dict[str, str],
           portal: dict[str, str]) -> None:
    """Half the cases name a registered tenant and an existing rule (and carry the
    portal's CSRF token), so the generator reaches the bodies' validation instead of
    stopping at a 404 or 403."""
    path = case.path_parameters or {}
    if "tenant_id" in path:
        path["tenant_id"] = tenant_id
    if path.get("scope") not in (None, "global"):
        path["scope"] = tenant_id
    if "rule_id" in path:
        path["rule_id"] = rule_ids["tenant" if "tenant_id" in path or "scope" in path
                                   else "global"]
    if case.path.startswith("/api/portal/") and isinstance(case.body, dict):
        case.body["csrf"] = portal["csrf"]
        case.headers = {**(case.headers or {}), "Origin": portal["origin"]}


def _fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, root: str,
          headers: dict[str, str], examples: int, known: Callable[[schemathesis.Case], None]
          ) -> tuple[int, str]:
    """How many cases ran, and the first failure ("" for none)."""
    seen: list[int] = []
    session = requests.Session()

    @_settings(examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        if len(seen) % 2:
            known(case)
        seen.append(1)
        case.call_and_validate(base_url=root, headers=headers, checks=CHECKS,
                               session=session, timeout=30)

    try:
        run()
    except Unsatisfiable:  # negative mode, and nothing in the operation to make invalid
        return len(seen), ""
    except (Exception, BaseExceptionGroup) as exc:  # each one is reported by the test
        return len(seen), str(exc)
    return len(seen), ""


@pytest.mark.timeout(600)
def test_no_input_breaks_the_api_or_its_document(api):
    base, session, repo = api
    root = base.rsplit("/api", 1)[0]
    tenant_id = str(uuid.uuid4())
    repo.add(Tenant(tenant_id, "Fuzz Co"))
    rule = {"name": "fuzz", "recipients": ["soc@mssp.example"]}
    rule_ids = {"global": session.post(f"{base}/rules", json=rule).json()["id"],
                "tenant": session.post(f"{base}/tenants/{tenant_id}/rules",
                                       json=rule).json()["id"]}
    signed_in = {"X-MS-CLIENT-PRINCIPAL": principal()}
    page = requests.get(f"{base}/portal/invitations", headers=signed_in, timeout=10).text
    portal = {"origin": root, "csrf": unescape(
        re.search(r'name="csrf" value="([^"]+)"', page).group(1))}
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        security = str(operation.definition.raw.get("security"))
        runs = [("no key", {})]
        if "functionKey" in security:
            runs.append(("keyed", {"x-functions-key": FUNCTION_KEY}))
        if "appServicePrincipal" in security:
            runs.append(("signed in", signed_in))
        for who, headers in runs:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                count, failure = _fuzz(operation, mode, root, headers, EXAMPLES[who],
                                       lambda case: _known(case, tenant_id, rule_ids, portal))
                tried += count
                if failure:
                    failures.append(f"{operation.label} [{who}, {mode.value}]: {failure}")
    assert not failures, f"{len(failures)} failing:\n\n" + "\n\n".join(failures)
    assert tried > 300
