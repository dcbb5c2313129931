"""A real rsyslog (Debian's package) on free loopback ports, writing what it receives to a
file: the receiving end of the syslog output in tests, benchmarks and `make run`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import trustme

CONFIG = """
global(workDirectory="{work}"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}"
       maxMessageSize="64k")
module(load="imtcp" maxSessions="200")
module(load="imudp")
template(name="msgOnly" type="string" string="%msg%\\n")
ruleset(name="siem") {{
  action(type="omfile" file="{out}" template="msgOnly" flushOnTXEnd="on")
}}
input(type="imtcp" port="{tcp}" ruleset="siem")
input(type="imtcp" port="{tls}" ruleset="siem" streamDriver.name="gtls"
      streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imudp" port="{udp}" ruleset="siem")
"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Rsyslog:
    """`start()`, `stop()` and `start()` again on the same ports (a receiver down, then up)."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        if not os.path.exists(self.binary):
            raise RuntimeError("rsyslogd is not installed (apt-get install rsyslog "
                               "rsyslog-gnutls)")
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.out = self.dir / "received.log"
        self.ca_file = self.dir / "ca.pem"
        self.tcp_port, self.tls_port = free_port(), free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        ca = trustme.CA(organization_name="mssp-hub test syslog")
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.private_key_pem.write_to_path(str(self.dir / "key.pem"))
        cert.cert_chain_pems[0].write_to_path(str(self.dir / "cert.pem"))
        (self.dir / "work").mkdir(exist_ok=True)
        (self.dir / "rsyslog.conf").write_text(CONFIG.format(
            work=self.dir / "work", ca=self.ca_file, cert=self.dir / "cert.pem",
            key=self.dir / "key.pem", out=self.out, tcp=self.tcp_port, tls=self.tls_port,
            udp=self.udp_port))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15) -> Rsyslog:
        self.process = subprocess.Popen(
            [self.binary, "-n", "-f", str(self.dir / "rsyslog.conf"),
             "-i", str(self.dir / "rsyslog.pid")],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "rsyslogd.err", "ab"))  # noqa: SIM115
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("rsyslogd exited: "
                                   + (self.dir / "rsyslogd.err").read_text()[-2000:])
            if all(self._listening(p) for p in (self.tcp_port, self.tls_port)):
                return self
            time.sleep(0.05)
        raise RuntimeError("rsyslogd did not start listening")

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def lines(self) -> list[str]:
        if not self.out.exists():
            return []
        return [line for line in self.out.read_text("utf-8").split("\n") if line]

    def wait_for(self, count: int, timeout: float = 15) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.lines()
            if len(lines) >= count:
                return lines
            time.sleep(0.05)
        return self.lines()
