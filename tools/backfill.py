"""`python -m tools.backfill`: build the tenant directory (the portal's tenant names and
attention marks), the portal's AlertIndex, the tenant summaries and the SIEM feed's tenant
views and the correlation index of a store written before they existed, in place
(TenantRepository.rebuild_directory, tools/backfill_index.py, shared/ops/backfill.py, then
shared/correlation/backfill.py).

    # with the app's settings in the environment (AzureWebJobsStorage, ...), after the
    # new version is deployed:
    python -m tools.backfill            # goes on from where the last run stopped
    python -m tools.backfill --restart  # all of it again (harmless: each step is idempotent)

Prints its progress; a run cut short (Ctrl-C, a lost connection) is resumed by running it
again. Exits 1 with the error otherwise.
"""

from __future__ import annotations

import argparse
import sys

from shared.config import get_settings
from shared.correlation.backfill import backfill as correlate
from shared.correlation.backfill import silent
from shared.correlation.service import Correlation
from shared.model import TenantStatus
from shared.ops.backfill import Backfill
from shared.storage import tables
from shared.storage.alerts import AlertRepository
from shared.storage.correlation import CorrelationStore
from shared.storage.ingest_state import IngestStates
from shared.storage.siem_feed import SiemFeedRepository
from shared.storage.tenant_summaries import TenantSummaries
from shared.storage.tenants import TenantRepository
from tools.backfill_index import index_tenants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backfill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--restart", action="store_true", help="start again from the first")
    args = parser.parse_args(argv)
    settings = get_settings()
    storage = settings.storage
    registry = TenantRepository(tables.table(storage, tables.TENANTS))
    job = Backfill(registry,
                   IngestStates(tables.table(storage, tables.INGEST_STATE)),
                   AlertRepository(tables.table(storage, tables.ALERTS)),
                   TenantSummaries(tables.table(storage, tables.TENANT_SUMMARIES)),
                   SiemFeedRepository(tables.table(storage, tables.SIEM_FEED)),
                   settings.siem.retention_days, log=lambda line: print(line, flush=True))
    try:
        print(f"tenant directory: {registry.rebuild_directory()} tenants listed", flush=True)
        index_tenants(storage)  # resumes by itself: its place is kept in the index table
        report = job.run(restart=args.restart)
        alerts = AlertRepository(tables.table(storage, tables.ALERTS))
        store = CorrelationStore(tables.table(storage, tables.CORRELATION),
                                 tables.table(storage, tables.CORRELATION_INDEX))
        active = sum(1 for t in registry.all() if t.status == TenantStatus.ACTIVE)
        service = Correlation(store, silent(), silent(), settings.correlation,
                              lambda: active, alerts.alert_and_schema)
        indexed = correlate(service, store, alerts,
                            [(t.tenant_id, t.display_name) for t in registry.names()],
                            log=lambda line: print(line, flush=True))
    except Exception as exc:  # a tool: say what failed; a rerun resumes
        print(f"backfill stopped: {exc}; run it again to resume", file=sys.stderr)
        return 1
    print(f"done: {report.tenants} tenants recounted, {report.hours} feed hours "
          f"({report.entries} entries) copied to tenant views, {indexed.alerts} alerts' "
          f"indicators indexed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
