"""`python -m tools.mssp`: the admin API from a shell, for ops.

    export MSSP_HUB_URL=https://<app>.azurewebsites.net MSSP_HUB_KEY=<function key>
    python -m tools.mssp invite "Northwind Traders" it@northwind.example [--tenant ...]
        [--access read|triage] [--source mde|graph]
    python -m tools.mssp invitations | tenants | pause ID | resume ID | move-to-graph ID
    python -m tools.mssp offboard ID [--delete-alerts]
    python -m tools.mssp reconsent ID [--email it@northwind.example] [--days 7]
        [--access read|triage] [--source mde|graph]

Prints the API's JSON; exits 1 with the API's error (naming the bad field) otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import requests


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> int:
    url = f"{args.url.rstrip('/')}/api/{path}"
    response = requests.request(method, url, json=body, timeout=60,
                                headers={"x-functions-key": args.key})
    try:
        payload = response.json()
    except ValueError:
        payload = {"error": f"HTTP {response.status_code}", "body": response.text[:500]}
    print(json.dumps(payload, indent=2))
    return 0 if response.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mssp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("MSSP_HUB_URL",
                                                        "http://127.0.0.1:7071"))
    parser.add_argument("--key", default=os.environ.get("MSSP_HUB_KEY", ""),
                        help="a function key (default: $MSSP_HUB_KEY)")
    sub = parser.add_subparsers(dest="command", required=True)
    invite = sub.add_parser("invite", help="create an invitation and print its link")
    invite.add_argument("display_name")
    invite.add_argument("contact_email")
    invite.add_argument("--tenant", default="", help="expected tenant id or domain")
    invite.add_argument("--days", type=int, default=7, help="days until it expires")
    invite.add_argument("--access", choices=("read", "triage"), default="read",
                        help="read-only (Alert.Read.All) or triage (Alert.ReadWrite.All, "
                             "through the triage app)")
    invite.add_argument("--source", choices=("mde", "graph"), default=None,
                        help="Defender for Endpoint or Microsoft Graph (every Defender XDR "
                             "product); default: the hub's DEFAULT_ALERT_SOURCE")
    sub.add_parser("invitations", help="list invitations")
    sub.add_parser("tenants", help="list tenants with status and health")
    for name in ("pause", "resume", "offboard", "move-to-graph"):
        action = sub.add_parser(name, help=f"{name} a tenant")
        action.add_argument("tenant_id")
        if name == "offboard":
            action.add_argument("--delete-alerts", action="store_true")
    again = sub.add_parser("reconsent", help="a re-consent invitation for a known tenant "
                           "(paused, offboarded, revoked, unavailable), or to change an "
                           "active one's access; prints its link")
    again.add_argument("tenant_id")
    again.add_argument("--email", default="", help="the customer's contact email")
    again.add_argument("--days", type=int, default=7, help="days until it expires")
    again.add_argument("--access", choices=("read", "triage"), default="read",
                       help="the access the new consent is for")
    again.add_argument("--source", choices=("mde", "graph"), default=None,
                       help="graph: an active mde tenant moves to Graph once consented")
    args = parser.parse_args(argv)
    if not args.key:
        parser.error("give --key or set MSSP_HUB_KEY")
    if args.command == "invite":
        body = {"display_name": args.display_name, "contact_email": args.contact_email,
                "expires_in_days": args.days, "access": args.access}
        if args.source:
            body["source"] = args.source
        if args.tenant:
            body["expected_tenant"] = args.tenant
        return _call(args, "POST", "invitations", body)
    if args.command == "reconsent":
        body = {"expires_in_days": args.days, "access": args.access,
                **({"contact_email": args.email} if args.email else {}),
                **({"source": args.source} if args.source else {})}
        return _call(args, "POST", f"tenants/{args.tenant_id}/invitations", body)
    if args.command in ("invitations", "tenants"):
        return _call(args, "GET", args.command)
    body = {"delete_alerts": args.delete_alerts} if args.command == "offboard" else None
    return _call(args, "POST", f"tenants/{args.tenant_id}/{args.command}", body)


if __name__ == "__main__":
    sys.exit(main())
