"""In-memory fakes of the repositories in `shared/storage/`, one module per family.

They keep the same contract as the real ones (tests/contract runs one suite on both), so
service logic can be unit-tested without Azurite. Not deployed code's business: nothing
outside tests and dev tools builds them."""

import itertools

_counter = itertools.count(1)


def new_etag() -> str:
    """A fresh ETag, unique across every fake: a guarded write against an old one fails."""
    return f'W/"memory-{next(_counter)}"'


def next_number() -> int:
    """A process-wide increasing number, for the fakes' unique row-key suffixes."""
    return next(_counter)
