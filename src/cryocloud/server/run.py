"""Start the server: check the address, take the monitor's place, listen, and stop both cleanly."""

from __future__ import annotations

import ipaddress
import socket
import sys

from cryocloud.errors import CryocloudError
from cryocloud.settings import Settings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tls: bool, insecure_bind: bool) -> None:
    """Loopback always; another address only with TLS, or with --insecure-bind said out loud."""
    if is_loopback(host) or tls or insecure_bind:
        return
    raise CryocloudError(
        f"refusing to listen on {host} without TLS: tokens and session cookies would cross the network in clear",
        "give --tls-cert and --tls-key, or put a TLS proxy in front and pass --insecure-bind, "
        "or keep the default --host 127.0.0.1")


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise CryocloudError(f"cannot listen on {host}:{port}: {e.strerror}",
                             "choose another --port (0: any free one), or stop what listens there") from None
    sock.listen(128)  # callers that connect before the loop runs wait in the backlog, never refused
    return sock


def serve(settings: Settings, host: str, port: int, *, tls_cert: str = "", tls_key: str = "",
          insecure_bind: bool = False, log_level: str = "info") -> int:
    import uvicorn

    from cryocloud.app.daemon import InProcess
    from cryocloud.app.notify import Notifier
    from cryocloud.server.app import create_app

    if bool(tls_cert) != bool(tls_key):
        raise CryocloudError("TLS needs both --tls-cert and --tls-key", "give both files (PEM)")
    check_bind(host, bool(tls_cert), insecure_bind)
    sock = listening_socket(host, port)
    monitor = InProcess(settings)
    notifier = Notifier(settings, lambda line: print(f"cryocloud serve: {line}", file=sys.stderr, flush=True))
    try:
        config = uvicorn.Config(create_app(settings), log_level=log_level, ssl_certfile=tls_cert or None,
                                ssl_keyfile=tls_key or None, server_header=False)
        scheme, bound = "https" if tls_cert else "http", sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"cryocloud serve: listening on {scheme}://{shown}:{bound}/ (API {scheme}://{shown}:{bound}/api/v1/, "
              f"ledger {settings.ledger_path})", flush=True)
        if insecure_bind and not tls_cert and not is_loopback(host):
            print("cryocloud serve: WARNING: --insecure-bind: tokens travel in clear unless a TLS proxy is in front",
                  file=sys.stderr, flush=True)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        notifier.stop()
        monitor.stop()
        sock.close()
    return 0
