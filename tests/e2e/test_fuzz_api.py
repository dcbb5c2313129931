"""Every operation of /api/openapi.json fuzzed on the running app (schemathesis, fixed
seed, bounded examples), with the function key and without: no answer is a 5xx, and
every answer is one the document lists, with its content type and schema.

Nothing is excluded: the rule test endpoints only keep their email in MailOutbox here
(MAIL_TRANSPORT=none). The portal's pages are fuzzed as a stranger (its sign-in is a
cookie or App Service's header, which the generator does not make up).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

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

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES = {"keyed": 12, "no key": 6}  # per operation and generation mode


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    phases=[Phase.explicit, Phase.generate],  # no shrinking: report as found
                    suppress_health_check=list(HealthCheck), print_blob=False)


def _known(case: schemathesis.Case, tenant_id: str, rule_ids: dict[str, str]) -> None:
    """Half the cases name a registered tenant and an existing rule, so the generator
    reaches the bodies' validation instead of stopping at a 404."""
    path = case.path_parameters or {}
    if "tenant_id" in path:
        path["tenant_id"] = tenant_id
    if "rule_id" in path:
        path["rule_id"] = rule_ids["tenant" if "tenant_id" in path else "global"]


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
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        keyed = operation.definition.raw.get("security") == [{"functionKey": []}]
        runs = [("keyed", {"x-functions-key": FUNCTION_KEY})] if keyed else []
        for who, headers in [*runs, ("no key", {})]:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                count, failure = _fuzz(operation, mode, root, headers, EXAMPLES[who],
                                       lambda case: _known(case, tenant_id, rule_ids))
                tried += count
                if failure:
                    failures.append(f"{operation.label} [{who}, {mode.value}]: {failure}")
    assert not failures, f"{len(failures)} failing:\n\n" + "\n\n".join(failures)
    assert tried > 300
