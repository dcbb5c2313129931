"""A small syslog receiver for `make run --syslog`: RFC 5425/6587 octet-counted frames over
TCP, each message appended to a file and shown in brief on the console.

Tests use a real rsyslog (devtools/rsyslog.py); this one needs nothing installed, so a
newcomer can watch CEF lines arrive on any machine.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable
from pathlib import Path

from shared.logsafe import clean
from shared.siem.cef import labelled, parse_cef


def frames(stream) -> list[bytes]:
    """Read octet-counted frames until the sender closes."""
    out = []
    while True:
        digits = b""
        while (c := stream.read(1)) not in (b" ", b""):
            digits += c
        if not digits or not digits.isdigit():
            return out
        out.append(stream.read(int(digits)))


def brief(message: str) -> str:
    """'High   Contoso  Suspicious PowerShell…' for the console (escaped: it is alert text)."""
    try:
        header, ext = parse_cef(message)
    except (ValueError, IndexError):
        return clean(message, 160)
    return clean(f"CEF sev {header[6]:>2}  {labelled(ext).get('TenantName', '?')[:24]:<24}  "
                 f"{ext.get('msg', header[5])}", 160)


class SyslogReceiver:
    def __init__(self, path: Path, echo: Callable[[str], None] = print, port: int = 0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = threading.Lock()
        receiver = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for frame in frames(self.rfile):
                    text = frame.decode("utf-8", "replace")
                    parts = text.split(" ", 7)  # PRI+VERSION TIME HOST APP PROCID MSGID SD MSG
                    message = parts[7] if len(parts) == 8 else text
                    with lock, open(receiver.path, "a", encoding="utf-8") as out:
                        out.write(message.replace("\n", "\\n") + "\n")
                    echo("syslog  " + brief(message))

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def start(self) -> SyslogReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
