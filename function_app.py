"""The whole system on one screen: the app, then one Blueprint per trigger family.

Settings are read and validated on first use (shared.config.get_settings), so a bad
setting shows up as a clear error naming it rather than as an app with no functions.
"""

import azure.functions as func

from functions import (
    admin,
    bulk_triage,
    correlation,
    health,
    ingest,
    notify,
    onboarding,
    ops,
    portal,
    siem,
    triage,
)

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

app.register_functions(health.bp)
app.register_functions(ingest.bp)
app.register_functions(onboarding.bp)
app.register_functions(admin.bp)
app.register_functions(notify.bp)
app.register_functions(siem.bp)
app.register_functions(portal.bp)
app.register_functions(triage.bp)
app.register_functions(bulk_triage.bp)
app.register_functions(ops.bp)
app.register_functions(correlation.bp)
