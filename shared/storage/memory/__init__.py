"""In-memory fakes of the repositories in `shared/storage/`, one module per family.

They keep the same contract as the real ones (tests/contract runs one suite on both), so
service logic can be unit-tested without Azurite. Not deployed code's business: nothing
outside tests and dev tools builds them."""
