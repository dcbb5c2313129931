"""Entra ID and the Defender for Endpoint API, simulated over HTTPS on loopback.

Faithful to the facts in ../shared/reference/defender-api.md so that code which works
against it works against Microsoft: the real azure-identity/MSAL and requests code paths
talk to it. Run it as `python -m devtools.simulator` or in-process (`Simulator`).
"""
