"""`make run ARGS=--smtp-catcher`: a local SMTP server (aiosmtpd) that takes every email
the app sends and keeps it as an .eml file, so the real SMTP path runs end to end and the
messages open in any mail program. Nothing is relayed anywhere."""

from __future__ import annotations

import email
import socket
import threading
from collections.abc import Callable
from email import policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from shared.logsafe import clean


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Keep:
    """aiosmtpd handler: each message to `<folder>/<n>.eml`, one line on the console."""

    def __init__(self, folder: Path, echo: Callable[[str], None]) -> None:
        self.folder, self.echo = folder, echo
        self.count = len(list(folder.glob("*.eml")))
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.count += 1
            path = self.folder / f"{self.count:06d}.eml"
        path.write_bytes(envelope.content)
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.echo(clean(f"mail  to {', '.join(envelope.rcpt_tos)}  {message['Subject']}  "
                        f"({path.name})", 200))
        return "250 Message kept"


class SmtpCatcher:
    def __init__(self, folder: Path, echo: Callable[[str], None] = print, port: int = 0
                 ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port = folder, port or _free_port()
        self.handler = _Keep(folder, echo)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpCatcher:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def settings(self) -> dict[str, str]:
        """The app settings that send to this catcher over plain SMTP on loopback."""
        return {"MAIL_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(self.port), "SMTP_SECURITY": "none",
                "SMTP_USERNAME": "", "SMTP_PASSWORD": ""}
