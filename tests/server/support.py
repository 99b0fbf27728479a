"""A server's config, users and tokens for the server tests; a running `cryocloud serve` stopped by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cryocloud.app.facility import add_user, create_token
from cryocloud.settings import load_settings
from spine.helpers import wait_for


@dataclass
class People:
    alice: str
    bob: str
    boss: str


def facility(home: Path, roots: list[Path], extra: str = "") -> People:
    """A config whose project roots are `roots`, and three users: alice and bob (users), boss (manager)."""
    home.mkdir(parents=True, exist_ok=True)
    listed = ", ".join(f'"{r}"' for r in roots)
    (home / "config.toml").write_text(f"[server]\nproject_roots = [{listed}]\n{extra}", encoding="utf-8")
    settings = load_settings()
    tokens = {}
    for name, role in (("alice", "user"), ("bob", "user"), ("boss", "manager")):
        add_user(settings, name, role)
        tokens[name] = create_token(settings, name)[1]
    return People(**tokens)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Served:
    """`cryocloud serve --port 0` in its own process; its URL from the line it prints; stopped by its PID."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        self.out = open(log, "w")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "cryocloud"), "serve", "--port", "0", *args],
                                     stdout=self.out, stderr=subprocess.STDOUT, env=dict(os.environ))
        assert wait_for(lambda: "listening on" in log.read_text() or self.proc.poll() is not None, 60)
        text = log.read_text()
        assert "listening on" in text, text
        self.url = text.split("listening on ", 1)[1].split("/ ", 1)[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.out.close()


def submitter_config(folder: Path, url: str) -> Path:
    """A submitter's config in facility mode: [server] url (its token comes from $CRYOCLOUD_TOKEN)."""
    config = folder / "submitter.toml"
    config.write_text(f'[server]\nurl = "{url}"\n', encoding="utf-8")
    return config


def qsub(project: Path, job_dir: str) -> subprocess.CompletedProcess[str]:
    """RELION's call of the queue command, from the project folder."""
    return subprocess.run([str(Path(sys.executable).parent / "cryocloud-qsub"), f"{job_dir}run_submit.script"],
                          cwd=project, capture_output=True, text=True, timeout=60, check=False)
