"""`python -m tools.backfill_index`: build the portal's AlertIndex from the alerts stored
before it existed. A one-off after deploying the version whose relay keeps the index
(issue 18): deploy first (from then on the relay indexes every new alert version), then
run this once against the app's storage, with the same storage settings as the app:

    AzureWebJobsStorage='<connection string>' python -m tools.backfill_index
    python -m tools.backfill_index --tenant <tenant id> --batch 500

(or `AzureWebJobsStorage__tableServiceUri` and `__queueServiceUri` with an Azure login that
may write the tables). Each tenant of the registry is read a batch of Alerts rows at a
time; its place is kept in the AlertIndex table after every batch, so an interrupted run
resumes where it stopped, and a finished tenant is skipped. Running it twice is harmless.
Progress goes to stdout: one line per batch of tenants, and a total at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from shared.storage import tables
from shared.storage.alert_index import AlertIndex, backfill
from shared.storage.alerts import AlertRepository
from shared.storage.connection import StorageConnection
from shared.storage.tenants import TenantRepository

STEP = 5_000  # rows read per tenant between two progress lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backfill_index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenant", action="append", default=[],
                        help="only this tenant (repeatable; default: every tenant)")
    parser.add_argument("--batch", type=int, default=1000, help="Alerts rows a read")
    args = parser.parse_args(argv)
    index_tenants(StorageConnection.from_env(os.environ, "AzureWebJobsStorage"),
                  args.tenant, args.batch)
    return 0


def index_tenants(storage: StorageConnection, tenant_ids: list[str] | None = None,
                  batch: int = 1000) -> tuple[int, int]:
    """Index the stored alerts of these tenants (default: every tenant), printing progress;
    returns (rows read, entries written). Also the first step of `tools.backfill`."""
    alerts = AlertRepository(tables.table(storage, tables.ALERTS))
    index = AlertIndex(tables.table(storage, tables.ALERT_INDEX))
    ids = tenant_ids or sorted(t.tenant_id for t in
                               TenantRepository(tables.table(storage, tables.TENANTS)).all())
    started, rows, entries = time.monotonic(), 0, 0
    for number, tenant_id in enumerate(ids, 1):
        while True:
            step = backfill(alerts, index, tenant_id, batch_rows=batch, budget=STEP)
            rows, entries = rows + step.rows_read, entries + step.entries
            print(f"[{number}/{len(ids)}] {tenant_id}: {'done' if step.done else 'going'}; "
                  f"{rows} rows read, {entries} entries written "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
            if step.done:
                break
    print(f"backfilled {len(ids)} tenants: {rows} rows read, {entries} entries written")
    return rows, entries


if __name__ == "__main__":
    sys.exit(main())
