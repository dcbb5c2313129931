"""SIEM delivery: the alert feed the pull API and the push outputs read, and the formats."""
