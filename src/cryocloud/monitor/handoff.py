"""Hand a submission to the running monitor, which has everything imported and answers in milliseconds.

RELION waits for nothing, but every job pays the submit latency. The user's monitor listens on a Unix
socket (`$CRYOCLOUD_HOME/run/submit.sock`, mode 0600). `submit` connects, sends the script, the folder and
what a job may need of the submitter's environment (jobs/environment.py; nothing is written for it), and reads
the answer; the monitor answers with the handler it was given (the app's `answer_submission`, which runs the same
`submit_script` a cold submit runs). No monitor listening: the caller does the work itself. Same function,
same errors, same files either way.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryocloud.errors import ConfigError, CryocloudError, JobFolderBusy, LaunchRefused, SubmissionError
from cryocloud.jobs.environment import job_environment
from cryocloud.settings import Settings

Handler = Callable[[dict[str, Any]], dict[str, Any]]  # a request {script, cwd, env} -> the answer to send back

ANSWER_WAIT = 120.0  # s for the answer (input discovery of a huge project can take a while)
SOCKET_NAME = "submit.sock"


def socket_path(settings: Settings) -> Path:
    return settings.run_dir / SOCKET_NAME


def _recv_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def hand_off(settings: Settings, script: Path, cwd: Path, env: Mapping[str, str]) -> dict[str, Any] | None:
    """Ask the monitor to submit. None: no monitor listens (the caller submits). Raises what submit raises."""
    path = socket_path(settings)
    if not path.exists():
        return None
    # what any profile's jobs may need: the monitor picks the profile and passes only that one's names on
    request = {"script": str(script), "cwd": str(cwd), "env": job_environment(env, settings.pass_env())}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        try:
            conn.connect(str(path))
        except OSError:  # a stale socket of a monitor that is gone, or a path too long for a socket
            return None
        conn.settimeout(ANSWER_WAIT)
        try:
            conn.sendall(json.dumps(request).encode())
            conn.shutdown(socket.SHUT_WR)
            raw = _recv_all(conn)
        except OSError:
            raw = b""
    if not raw:
        raise CryocloudError("the monitor took the submission but did not answer",
                             "check `cryocloud status` before submitting again")
    got: dict[str, Any] = json.loads(raw)
    if got.get("ok"):
        return got
    kinds: dict[str, type[CryocloudError]] = {
        "ConfigError": ConfigError, "SubmissionError": SubmissionError, "JobFolderBusy": JobFolderBusy,
        "LaunchRefused": LaunchRefused}
    raise kinds.get(str(got.get("kind")), CryocloudError)(str(got.get("message")), str(got.get("hint") or ""))


def listen(settings: Settings) -> socket.socket | None:
    """In the monitor (which holds the lock): the listening socket, or None where sockets cannot be made."""
    path = socket_path(settings)
    path.unlink(missing_ok=True)  # left by a monitor that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        path.chmod(0o600)
        sock.listen(64)
    except OSError:
        sock.close()
        return None
    return sock


def serve_one(sock: socket.socket, handler: Handler) -> None:
    """Answer one waiting submitter."""
    conn, _ = sock.accept()
    _answer(conn, handler)


def close(settings: Settings, sock: socket.socket, handler: Handler) -> None:
    """Stop listening, then answer whoever connected meanwhile, so no submitter is left without an answer."""
    socket_path(settings).unlink(missing_ok=True)
    sock.setblocking(False)
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:  # nobody waiting (BlockingIOError) or the socket is gone
            break
        conn.setblocking(True)
        _answer(conn, handler)
    sock.close()


def _answer(conn: socket.socket, handler: Handler) -> None:
    with conn:
        conn.settimeout(10.0)
        try:
            request = json.loads(_recv_all(conn))
        except (OSError, ValueError):
            return
        try:
            answer = handler(request)
        except Exception as e:  # a bug must not kill the monitor that runs everyone's jobs
            answer = {"ok": False, "kind": "CryocloudError", "message": f"internal error: {e!r}",
                      "hint": "run with CRYOCLOUD_DEBUG=1 and report it"}
        with contextlib.suppress(OSError):  # the submitter gave up; the job is recorded either way
            conn.sendall(json.dumps(answer).encode())
