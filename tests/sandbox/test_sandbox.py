"""The AWS sandbox as a user meets it: `sandbox up` on loopback, an instance launched through the EC2 API boots in
the simulator, gets its role's credentials from its metadata stub, reaches the lab's bucket over HTTPS and nothing
else (the lab's folders and cryocloud's home are hidden, the node role is limited to the lab's prefix), ends when
terminated or shut down; aws-cli works with the printed exports alone; `down` leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cryocloud.errors import CryocloudError
from cryocloud.proc import pid_alive, run_command
from cryocloud.sandbox import box
from cryocloud.settings import General, Settings

pytestmark = pytest.mark.integration

NODE_SCRIPT = """#!/bin/bash
cat {secret} && echo "READ THE LAB'S FILE" || echo "lab folder hidden"
ls {home}/sandbox/sandbox.json 2>/dev/null && echo "READ CRYOCLOUD'S HOME" || echo "home hidden"
env | grep -q '^AWS_ACCESS_KEY_ID' && echo "KEYS IN ENV" || echo "no keys in env"
python3 - <<'PY'
import boto3
s3 = boto3.client("s3")
print("credentials from", boto3.session.Session().get_credentials().method)
s3.put_object(Bucket="cryocloud-sandbox", Key="cryocloud/from-node.txt", Body=b"written on the node")
print("wrote inside the prefix")
try:
    s3.put_object(Bucket="cryocloud-sandbox", Key="other/x.txt", Body=b"x")
    print("WROTE OUTSIDE THE PREFIX")
except Exception as e:
    print("outside the prefix refused:", type(e).__name__)
PY
shutdown -h now
"""


def _wait(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """Wait for an event (a state, a file), polling; fail with `what` if it never comes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, dict[str, Any], Path]]:
    home = tmp_path_factory.mktemp("sbx") / "cchome"
    lab = tmp_path_factory.mktemp("lab")
    (lab / "Movies").mkdir()
    (lab / "Movies" / "secret.txt").write_text("the lab's own data\n")
    settings = Settings(home=home, config_path=home / "config.toml", general=General(user="lab"))
    state, already = box.up(settings, [lab])
    assert not already
    yield settings, state, lab
    box.down(settings)


def _clients(state: dict[str, Any]) -> tuple[Any, Any]:
    import boto3

    s = boto3.session.Session(aws_access_key_id=state["lab_access_key"], aws_secret_access_key=state["lab_secret_key"],
                              region_name=state["region"])
    return s.client("ec2", endpoint_url=state["moto_url"]), s.client("s3", endpoint_url=state["s3_url"],
                                                                     verify=state["ca_file"])


def _launch(ec2: Any, user_data: str, profile: bool = True) -> str:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    kw: dict[str, Any] = {"IamInstanceProfile": {"Name": box.ROLE}} if profile else {}
    got = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1, UserData=user_data,
                            InstanceInitiatedShutdownBehavior="terminate", **kw)
    return str(got["Instances"][0]["InstanceId"])


def _state_of(ec2: Any, iid: str) -> str:
    return str(ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"])


def test_a_node_sees_only_s3_through_its_role(sandbox: tuple[Settings, dict[str, Any], Path]) -> None:
    settings, state, lab = sandbox
    ec2, s3 = _clients(state)
    iid = _launch(ec2, NODE_SCRIPT.format(secret=lab / "Movies" / "secret.txt", home=settings.home))
    _wait("the node to shut itself down", lambda: _state_of(ec2, iid) == "terminated")
    console = (box.sandbox_dir(settings) / "nodes" / iid / "console.out").read_text()
    assert "lab folder hidden" in console and "READ THE LAB'S FILE" not in console
    assert "home hidden" in console and "no keys in env" in console
    assert "credentials from iam-role" in console  # boto3's own chain, from the metadata stub
    assert "wrote inside the prefix" in console and "outside the prefix refused: AccessDenied" in console
    body = s3.get_object(Bucket=box.BUCKET, Key="cryocloud/from-node.txt")["Body"].read()
    assert body == b"written on the node"
    assert (lab / "Movies" / "secret.txt").read_text() == "the lab's own data\n"  # untouched outside


def test_terminate_ends_the_nodes_processes(sandbox: tuple[Settings, dict[str, Any], Path]) -> None:
    settings, state, _lab = sandbox
    ec2, _s3 = _clients(state)
    iid = _launch(ec2, "#!/bin/bash\necho $$ > pid\nexec sleep 600\n")
    pidfile = box.sandbox_dir(settings) / "nodes" / iid / "pid"
    _wait("the user-data to start", pidfile.exists)
    nodes = json.loads((box.sandbox_dir(settings) / "nodes.json").read_text())
    row = nodes[iid]
    ec2.terminate_instances(InstanceIds=[iid])
    _wait("the node's processes to end", lambda: not pid_alive(int(row["pid"]), float(row["started"])))
    assert _state_of(ec2, iid) == "terminated"


def test_an_instance_without_a_role_gets_no_credentials(sandbox: tuple[Settings, dict[str, Any], Path]) -> None:
    settings, state, _lab = sandbox
    ec2, _s3 = _clients(state)
    script = ("#!/bin/bash\npython3 -c 'import boto3; print(\"creds:\", boto3.session.Session().get_credentials())'"
              "\nshutdown -h now\n")
    iid = _launch(ec2, script, profile=False)
    _wait("the node to shut down", lambda: _state_of(ec2, iid) == "terminated")
    assert "creds: None" in (box.sandbox_dir(settings) / "nodes" / iid / "console.out").read_text()


def test_aws_cli_works_with_the_printed_exports_alone(sandbox: tuple[Settings, dict[str, Any], Path],
                                                      tmp_path: Path) -> None:
    _settings, state, _lab = sandbox
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    for line in box.exports(state):
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    instances = json.loads(run_command(["aws", "ec2", "describe-instances", "--output", "json"], env=env).stdout)
    assert instances["Reservations"]
    buckets = run_command(["aws", "s3", "ls"], env=env).stdout
    assert box.BUCKET in buckets
    # and cryocloud itself: the account `up` made ready is found as it is, step by step
    env["CRYOCLOUD_HOME"] = str(_settings.home)
    found = run_command([sys.executable, "-m", "cryocloud", "aws", "bootstrap", "--bucket", box.BUCKET], env=env).stdout
    lines = found.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["found"] * 5, found
    assert lines[-1].startswith("profiles aws (made), aws-spot (made), aws-ondemand (made)")  # left ready
    again = run_command([sys.executable, "-m", "cryocloud", "aws", "bootstrap", "--bucket", box.BUCKET], env=env).stdout
    assert again.splitlines()[-1].startswith("profiles aws (found), aws-spot (found), aws-ondemand (found)")


def test_up_twice_status_and_a_killed_simulator(sandbox: tuple[Settings, dict[str, Any], Path]) -> None:
    """Last in this module: it kills the simulator."""
    settings, state, _lab = sandbox
    again, already = box.up(settings)
    assert already and again["moto_url"] == state["moto_url"]
    ec2, _s3 = _clients(state)
    iid = _launch(ec2, "#!/bin/bash\necho $$ > pid\nexec sleep 600\n")
    _wait("the user-data to start", (box.sandbox_dir(settings) / "nodes" / iid / "pid").exists)
    row = json.loads((box.sandbox_dir(settings) / "nodes.json").read_text())[iid]
    os.kill(int(state["simulator"]["pid"]), signal.SIGKILL)
    _wait("the simulator to die", lambda: not pid_alive(int(state["simulator"]["pid"]),
                                                        float(state["simulator"]["started"])))
    seen = box.status(settings)
    assert not seen["up"] and iid in seen["orphans"]
    assert not pid_alive(int(row["pid"]), float(row["started"]))


def test_down_leaves_nothing_running_or_listening(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "cchome", config_path=tmp_path / "none.toml", general=General(user="lab"))
    assert box.down(settings) == []  # nothing up: nothing to stop, no error
    state, _ = box.up(settings)
    procs = [state[k] for k in ("moto", "s3", "simulator")]
    ports = [int(state["moto_url"].rsplit(":", 1)[1]), int(state["s3_url"].rsplit(":", 1)[1])]
    assert set(box.down(settings)) == {"simulator", "moto", "s3"}
    assert not any(pid_alive(int(p["pid"]), float(p["started"])) for p in procs)
    for port in ports:  # nothing of this sandbox listens (another program may take a freed port at once)
        for pid in box.listeners(port):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            assert str(settings.home) not in cmdline and f"-p {port}" not in cmdline, f"{port}: {cmdline}"


def test_a_port_in_use_is_a_clear_error_and_leaves_nothing_running(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    settings = Settings(home=tmp_path / "cchome", config_path=tmp_path / "none.toml", general=General(user="lab"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(box, "_free_port", lambda: port)  # as if another program took it after we chose it
        with pytest.raises(CryocloudError, match=f"port {port} on 127.0.0.1 is in use") as e:
            box.up(settings)
    assert "sandbox up" in e.value.hint
    assert box.status(settings) == {"up": False, "parts": {}, "orphans": []}  # `up` cleaned up after itself
