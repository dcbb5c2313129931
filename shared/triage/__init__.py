"""Triage: analysts act on customers' alerts from the hub (write-back to Defender), and
every action is recorded once in the audit trail."""
