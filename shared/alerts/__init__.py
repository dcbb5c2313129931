"""One view of an alert whichever API stored it (Defender for Endpoint or Graph alerts_v2)."""
