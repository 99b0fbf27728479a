"""The AWS backend: one EC2 instance per job, chosen and priced by the planner, that ends itself.

The monitor has staged the job's inputs to S3 before `submit` is called (monitor/staging.py), so no instance is
billed while the lab uploads. `submit` launches the machine (the plan's choice, the profile's `instance_type`, or
RELION's "Machine" field) hardened by default: the bootstrap's security group (no inbound rule), IMDSv2 only, the
instance profile as the node's only way to S3, an encrypted root volume sized from the job, every resource tagged
(cryocloud:owner/project/job/expires) and InstanceInitiatedShutdownBehavior=terminate. The user-data
(userdata.py) installs the lab's exact cryocloud wheel and runs the agent (agent/cloud.py), which streams the job
folder back through the store; the lab pulls it and writes RELION's marker once the final manifest is verified.

`cancel` leaves an abort object the node looks for every few seconds; `cleanup` terminates the instance (safe
to repeat) and returns the bill: the price at launch for the instance's time, at least EC2's 60 seconds, plus
its volume and the outputs sent back to the lab.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cryocloud.backends.aws.options import AwsOptions
from cryocloud.backends.aws.userdata import user_data
from cryocloud.backends.base import BackendStatus, Bill, Handle, Launch
from cryocloud.errors import ConfigError, CryocloudError, SubmissionError
from cryocloud.jobs import control, runlog
from cryocloud.jobs.spec import JobSpec
from cryocloud.jobs.states import State
from cryocloud.settings import Profile, Settings, ec2_endpoint

GP3_USD_PER_GB_MONTH = 0.08  # us-east-1, 2026; a volume bills per second like its instance
TRANSFER_OUT_USD_PER_GB = 0.09  # S3 to the Internet (the lab), first 10 TB a month
ENDED = ("shutting-down", "terminated", "stopping", "stopped")
REASONS = {  # EC2's StateReason codes, as a user reads them
    "Server.SpotInstanceTermination": "AWS reclaimed the spot instance",
    "Server.InsufficientInstanceCapacity": "AWS had no capacity to keep the instance",
    "Server.InternalError": "the instance failed on AWS's side",
    "Client.InstanceInitiatedShutdown": "the node shut itself down without a final status (its agent died, or the "
                                        "job passed its hard deadline)",
    "Client.UserInitiatedShutdown": "the instance was terminated from outside (a user, or the console)",
}
QUOTA_HINT = ("ask for more in the Service Quotas console (EC2 > 'Running On-Demand G and VT instances' or 'All G "
              "and VT Spot Instance Requests', per family), or choose a smaller machine")


@dataclass(frozen=True)
class Choice:
    """The machine a job gets and what it costs per hour there."""

    instance_type: str
    market: str  # "spot" or "on-demand"
    usd_per_hour: float
    price_source: str
    hours: float | None  # the planner's hours on it (None: it cannot size the job)


def _code(e: Exception) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))


def aws_error(e: Exception, what: str) -> CryocloudError:
    """A botocore error as a user reads it: what failed, and what to do."""
    code, text = _code(e), str(e)
    name = type(e).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return ConfigError(f"{what}: no AWS credentials found",
                           "run `aws configure` (or `aws sso login`), or `eval \"$(cryocloud sandbox up)\"` to rehearse")
    if code in ("ExpiredToken", "RequestExpired", "ExpiredTokenException"):
        return ConfigError(f"{what}: the AWS credentials have expired", "log in again (`aws sso login`) and resubmit")
    if code in ("AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch"):
        return ConfigError(f"{what}: AWS refused the credentials ({code})",
                           "check the keys (`aws sts get-caller-identity`) and that the IAM user may run instances")
    if code in ("VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "InstanceLimitExceeded"):
        return SubmissionError(f"{what}: the account's vCPU quota is too small ({code})", QUOTA_HINT)
    if code == "NoSuchEntity" or "Invalid IAM Instance Profile" in text or code == "InvalidGroup.NotFound":
        return ConfigError(f"{what}: {text.rsplit(': ', 1)[-1]}",
                           "run `cryocloud aws bootstrap` once for this account and region (it makes the node's role, "
                           "instance profile and security group), or name yours in the profile")
    if code in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"):
        return ConfigError(f"{what}: the image does not exist in this region ({code})",
                           "check the profile's images (AMIs are per region)")
    if name == "EndpointConnectionError" or "Could not connect" in text:
        return CryocloudError(f"{what}: cannot reach the EC2 API ({text})",
                              "check the network, or AWS_ENDPOINT_URL_EC2 / [aws] endpoint_url_ec2")
    return CryocloudError(f"{what}: {text}", "see the AWS error above; `cryocloud plan` shows the options")


class AwsBackend:
    name = "aws"

    def __init__(self, profile: Profile, settings: Settings) -> None:
        self.profile, self.settings = profile, settings
        self.opts = AwsOptions.from_profile(profile.name, profile.options)
        self.region = self.opts.region or settings.aws.region
        self.machine = f"aws {self.region}"
        self._choices: dict[str, Choice] = {}  # job name -> the machine it was launched on
        self._options: dict[str, list[Choice]] = {}  # spec (JSON) -> the options planned for it (one plan per spec)
        self._client: Any = None

    # -- AWS ------------------------------------------------------------------------------------------------
    def ec2(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError:
                raise ConfigError("the AWS backend needs boto3", "pip install 'cryocloud[aws]'") from None
            self._client = boto3.session.Session().client("ec2", region_name=self.region,
                                                          endpoint_url=ec2_endpoint(self.settings))
        return self._client

    def _call(self, what: str, method: str, **kw: Any) -> Any:
        try:
            return getattr(self.ec2(), method)(**kw)
        except CryocloudError:
            raise
        except Exception as e:  # botocore's ClientError, NoCredentialsError, EndpointConnectionError, ...
            raise aws_error(e, what) from None

    # -- choosing and pricing ------------------------------------------------------------------------------
    def choose(self, spec: JobSpec) -> list[Choice]:
        """The machines to try, best first: the plan's options on the profile's market (one machine each)."""
        if spec.name in self._choices:
            return [self._choices[spec.name]]
        key = spec.to_json()
        if key not in self._options:
            self._options[key] = self._plan_options(spec)
        return self._options[key]

    def _plan_options(self, spec: JobSpec) -> list[Choice]:
        from cryocloud.planner.catalog import default_catalog
        from cryocloud.planner.plan import plan_for_spec

        machine = spec.extras.get("machine") or self.opts.instance_type
        market = self.opts.market
        try:
            plan = plan_for_spec(spec, self.settings, instance=machine or None, region=self.region,
                                 spot=market != "on-demand")
        except CryocloudError as e:
            if not machine:
                raise SubmissionError(f"the planner cannot choose a machine for this job: {e.message}",
                                      f"name one in RELION's Machine field, or instance_type in [profiles."
                                      f"{self.profile.name}]") from None
            catalog = default_catalog()
            price = catalog.on_demand(machine, self.region)
            quotes = catalog.spot(machine, self.region) if market != "on-demand" else []
            choices = [Choice(machine, "on-demand", price, "catalog", None)]
            if quotes:
                spot = Choice(machine, "spot", quotes[0].usd_per_hour, quotes[0].source, None)
                choices = [spot] if market == "spot" else [spot, *choices]
            return choices
        options = [o for o in plan.options if o.count == 1 and market in ("any", o.market)]
        if not options:
            raise SubmissionError(f"no {market} option on one machine for this job in {self.region}",
                                  "set market = \"any\" in the profile, or see `cryocloud plan`")
        if plan.best is not None and plan.best.count == 1 and plan.best in options:
            options.remove(plan.best)
            options.insert(0, plan.best)
        return [Choice(o.machine, o.market, o.usd_per_hour, o.price_source, o.hours) for o in options[:4]]

    def usd_per_hour(self, spec: JobSpec) -> float:
        return self.choose(spec)[0].usd_per_hour

    def has_room(self, spec: JobSpec, running: list[JobSpec]) -> bool:
        return True  # the account's quotas answer at launch

    def admit(self, spec: JobSpec) -> None:
        """At submit, before any upload: refuse a job none of whose options fits the account's vCPU quota (checked
        again at launch). Not asked without credentials found off the network (the launch then says why)."""
        from cryocloud.backends.aws.quotas import within_quota
        from cryocloud.planner.catalog import local_credentials

        if local_credentials():
            within_quota(self.choose(spec), self.region, self.ec2(), ec2_endpoint(self.settings))

    def deadline_hours(self, spec: JobSpec, hours: float | None) -> tuple[float, str]:
        """The job's hard deadline on the node, and why."""
        from cryocloud.backends.slurm_text import time_seconds

        floor = self.opts.deadline_floor_minutes / 60
        if hours is not None:
            return max(floor, hours * self.opts.deadline_margin), f"{self.opts.deadline_margin:g}x the plan's hours"
        wall = spec.resources.wall_time or spec.extras.get("wall_time", "")
        if wall:
            return time_seconds(wall) / 3600 + floor, "its wall time plus boot"
        return self.opts.max_hours, f"max_hours of profile {self.profile.name} (the planner cannot size it)"

    def _image(self, spec: JobSpec, env: dict[str, str]) -> tuple[str, str]:
        """(AMI, RELION version the node must run) for the job."""
        if (spec.client == "command" or spec.job_type == "command") and self.opts.image:
            return self.opts.image, ""
        from cryocloud.jobs.relion import installed_version

        version = spec.relion_version or installed_version(env)
        image = self.opts.images.get(version, "") or self.opts.image
        if not image:
            known = ", ".join(sorted(self.opts.images)) or "none"
            raise SubmissionError(
                f"profile {self.profile.name} has no image with RELION {version or '(not found on PATH)'} "
                f"(images for: {known})",
                f"build one (docs/node-image.md) and add it: [profiles.{self.profile.name}.images] "
                f"\"{version or 'X.Y.Z'}\" = \"ami-...\"")
        return image, version

    def _group(self) -> str:
        name = self.opts.security_group
        if name.startswith("sg-"):
            return name
        got = self._call("finding the security group", "describe_security_groups",
                         Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
        if not got:
            raise ConfigError(f"security group {name!r} does not exist in {self.region}",
                              "run `cryocloud aws bootstrap` once for this account and region")
        return str(got[0]["GroupId"])

    # -- the protocol ---------------------------------------------------------------------------------------
    def submit(self, launch: Launch) -> Handle:
        from cryocloud.backends.aws import wheel
        from cryocloud.storage import tags as tagging
        from cryocloud.storage.stores import open_store
        from cryocloud.storage.transfer import run

        spec, cdir = launch.spec, launch.control_dir
        record = (control.read_json(cdir / control.LAUNCH) or {}).get("staging")
        if not record:
            raise SubmissionError("the job's inputs were not staged to S3 before launch",
                                  f"profile {self.profile.name} needs staging through an s3:// store")
        url = urlparse(str(record["store"]))
        if url.scheme != "s3":
            raise ConfigError(f"profile {self.profile.name} stages through {record['store']}, which no EC2 "
                              "instance can reach", "set [storage] url = \"s3://bucket/prefix\"")
        bucket, prefix = url.netloc, url.path.strip("/")
        choices = self.choose(spec)  # first: an unknown machine or region is refused before any AWS call
        image, version = self._image(spec, launch.env)
        group = self._group()
        from cryocloud.backends.aws.quotas import within_quota  # the account's vCPU quota, before any launch

        choices = within_quota(choices, self.region, self.ec2(), ec2_endpoint(self.settings),
                               lambda line: runlog.note(spec.folder, line))
        store = open_store(str(record["store"]), self.settings)
        built = wheel.build()
        if run(store.head(built.key)) is None:
            run(store.put(built.key, built.data, tags=tagging.make(project="cryocloud-wheels")))
        deadline_h, why = self.deadline_hours(spec, choices[0].hours)
        now = time.time()
        deadline_at = now + deadline_h * 3600
        outputs = str(record["outputs"])
        abort_key = f"control/{outputs}/abort"
        job = {"store": str(record["store"]), "inputs": record["inputs"], "outputs": outputs,
               "job_dir": record["job_dir"], "control": record["control"], "abort_key": abort_key,
               "deadline_at": deadline_at, "deadman_minutes": self.opts.deadman_minutes, "relion_version": version,
               "executables": self.opts.executables, "stall_minutes": self.opts.stall_minutes,
               "end_stalled": self.opts.end_stalled}
        params = {"bucket": bucket, "wheel_key": f"{prefix}/{built.key}".lstrip("/"), "wheel_name": built.name, "job": job,
                  "boot_error_key": f"{prefix}/control/{outputs}/boot-error".lstrip("/"), "deadman_minutes": self.opts.deadman_minutes,
                  "stream_seconds": self.opts.stream_seconds}
        volume = self.opts.volume_gb or int(30 + math.ceil(3 * spec.data_bytes / 1e9))
        tags = tagging.make(project=Path(spec.project_dir).name, job=f"{launch.job_id} {spec.name}",
                            expires=str(int(deadline_at)), who=self.settings.user)
        tags[tagging.LEDGER] = tagging.ledger_id(self.settings.ledger_path)  # whose sweep may end it
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        root = self._call("reading the image", "describe_images", ImageIds=[image])["Images"]
        if not root:
            raise ConfigError(f"image {image} does not exist in {self.region}", "check the profile's images")
        kw: dict[str, Any] = {
            "ImageId": image, "MinCount": 1, "MaxCount": 1,
            "IamInstanceProfile": {"Name": self.opts.instance_profile},
            "SecurityGroupIds": [group],
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
            "InstanceInitiatedShutdownBehavior": "terminate",
            "BlockDeviceMappings": [{"DeviceName": root[0].get("RootDeviceName") or "/dev/xvda", "Ebs": {
                "VolumeSize": volume, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}}],
            "TagSpecifications": [{"ResourceType": r, "Tags": [*tag_list, {"Key": "Name", "Value":
                                   f"cryocloud-{launch.job_id}"}]} for r in ("instance", "volume")],
        }
        if self.opts.subnet:
            kw["SubnetId"] = self.opts.subnet
        tried: list[str] = []
        for choice in choices:
            extra: dict[str, Any] = {"ClientToken": f"cryocloud-{outputs.rsplit('-', 2)[-2]}-{choice.market}"[:64]}
            if choice.market == "spot":
                extra["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                    "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
            nvme = instance_store_for(spec, choice.instance_type)
            params["job"] = {**job, "instance_store": nvme}
            extra["UserData"] = user_data(self.opts.python, params)
            try:
                got = self.ec2().run_instances(**kw, **extra, InstanceType=choice.instance_type)
            except Exception as e:
                if _code(e) in ("InsufficientInstanceCapacity", "SpotMaxPriceTooLow", "Unsupported"):
                    tried.append(f"{choice.instance_type} {choice.market}: {_code(e)}")
                    runlog.note(spec.folder, f"no capacity for {choice.instance_type} {choice.market}; "
                                             "trying the next option")
                    continue
                raise aws_error(e, f"launching {choice.instance_type}") from None
            inst = got["Instances"][0]
            self._choices[spec.name] = choice
            self.machine = f"{choice.instance_type} {choice.market}"
            zone = inst.get("Placement", {}).get("AvailabilityZone", "")
            runlog.note(spec.folder, f"launched {choice.instance_type} {choice.market} in {zone or self.region} at "
                        f"{choice.usd_per_hour:g} USD/h (instance {inst['InstanceId']}; price: {choice.price_source}; "
                        f"ends itself by {time.strftime('%Y-%m-%d %H:%M', time.localtime(deadline_at))}, {why}"
                        + ("; its NVMe as RELION's --scratch_dir" if nvme else "") + ")")
            return Handle(self.name, {
                "instance_id": inst["InstanceId"], "region": self.region, "instance_type": choice.instance_type,
                "market": choice.market, "usd_per_hour": choice.usd_per_hour, "zone": zone, "launched_at": now,
                "volume_gb": volume, "store": str(record["store"]), "abort_key": abort_key,
                "boot_error_key": f"control/{outputs}/boot-error", "control_dir": str(cdir)})
        raise SubmissionError(f"AWS has no capacity for any option ({'; '.join(tried)})",
                              "try again later, another region ([profiles.X] region), or market = \"any\"")

    def _instance(self, handle: Handle) -> dict[str, Any] | None:
        try:
            got = self.ec2().describe_instances(InstanceIds=[handle.data["instance_id"]])
        except Exception as e:
            if _code(e) == "InvalidInstanceID.NotFound":
                return None
            raise aws_error(e, "asking EC2 about the instance") from None
        rows = [i for r in got["Reservations"] for i in r["Instances"]]
        return dict(rows[0]) if rows else None

    def _boot_error(self, handle: Handle) -> str:
        from cryocloud.storage.base import ObjectNotFound
        from cryocloud.storage.stores import open_store
        from cryocloud.storage.transfer import run

        try:
            text = run(open_store(str(handle.data["store"]), self.settings).get(str(handle.data["boot_error_key"])))
        except (ObjectNotFound, CryocloudError, KeyError):
            return ""
        lines = [ln for ln in text.decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""

    def status(self, handle: Handle) -> BackendStatus:
        iid = handle.data["instance_id"]
        inst = self._instance(handle)
        if inst is None:
            return BackendStatus(State.GONE, f"instance {iid} is unknown to EC2")
        state = inst["State"]["Name"]
        if state == "pending":
            return BackendStatus(State.QUEUED, f"instance {iid} is booting")
        if state == "running":
            return BackendStatus(State.RUNNING, f"instance {iid} is running")
        boot = self._boot_error(handle)
        if boot:
            return BackendStatus(State.FAILED, f"the node failed before the job started: {boot} (instance {iid})")
        code = str(inst.get("StateReason", {}).get("Code", ""))
        why = REASONS.get(code, inst.get("StateReason", {}).get("Message", "") or f"the instance is {state}")
        interrupted = "spot interruption" if code == "Server.SpotInstanceTermination" else ""
        return BackendStatus(State.FAILED, f"{why}; no final status came back (instance {iid})",
                             interrupted=interrupted)

    def cancel(self, handle: Handle) -> None:
        """Ask the node to stop (it looks every few seconds), with the reason the lab wrote."""
        from cryocloud.storage.stores import open_store
        from cryocloud.storage.transfer import run

        reason = Path(str(handle.data["control_dir"])) / control.CANCEL
        text = reason.read_text() if reason.exists() else "cancelled"
        run(open_store(str(handle.data["store"]), self.settings).put(str(handle.data["abort_key"]), text.encode()))

    def cleanup(self, handle: Handle) -> Bill | None:
        """Terminate the instance (whatever state it is in) and return what it cost."""
        iid = handle.data["instance_id"]
        inst = self._instance(handle)
        if inst is not None and inst["State"]["Name"] != "terminated":
            self._call("terminating the instance", "terminate_instances", InstanceIds=[iid])
        ended = time.time()
        started = float(handle.data.get("launched_at") or ended)
        if inst is not None and inst.get("LaunchTime") is not None:
            started = min(started, inst["LaunchTime"].timestamp())
        seconds = max(60.0, ended - started)  # EC2 bills per second, at least a minute
        instance_usd = float(handle.data["usd_per_hour"]) * seconds / 3600
        volume_usd = float(handle.data.get("volume_gb", 0)) * GP3_USD_PER_GB_MONTH / (730 * 3600) * seconds
        out_gb = _pulled_bytes(Path(str(handle.data["control_dir"]))) / 1e9
        transfer_usd = out_gb * TRANSFER_OUT_USD_PER_GB
        usd = round(instance_usd + volume_usd + transfer_usd, 6)
        detail = (f"instance {instance_usd:.4f} USD ({seconds:.0f} s at {float(handle.data['usd_per_hour']):g} USD/h), "
                  f"volume {volume_usd:.4f} USD, transfer out {transfer_usd:.4f} USD ({out_gb:.3f} GB)")
        folder = self.logs(handle)[0].parent
        runlog.note(folder, f"terminated instance {iid}; {usd:.4f} USD ({detail})")
        self._forget_control_objects(handle)
        return Bill(started, ended, usd, detail)

    def _forget_control_objects(self, handle: Handle) -> None:
        """The abort and boot-error objects meant only for this attempt (the staged data stay: they expire by tag)."""
        from cryocloud.storage.stores import open_store
        from cryocloud.storage.transfer import run

        try:
            run(open_store(str(handle.data["store"]), self.settings).delete(
                [str(handle.data["abort_key"]), str(handle.data["boot_error_key"])]))
        except CryocloudError as e:  # a leftover object costs nothing that matters; say so and go on
            runlog.note(self.logs(handle)[0].parent, f"could not remove the job's control objects: {e.message}",
                        runlog.ERR)

    def logs(self, handle: Handle) -> tuple[Path, Path]:
        launch = control.read_json(Path(str(handle.data.get("control_dir", "."))) / control.LAUNCH) or {}
        if "spec" not in launch:
            return Path("run.out"), Path("run.err")
        spec = JobSpec.from_dict(launch["spec"])
        return spec.folder / "run.out", spec.folder / "run.err"


def instance_store_for(spec: JobSpec, instance_type: str) -> bool:
    """Whether the node should mount its instance store as RELION's --scratch_dir (agent/scratch.py): a
    relion_refine job without a --scratch_dir of its own, on a type whose NVMe holds its particles with room."""
    from cryocloud.jobs import cmdline
    from cryocloud.planner.catalog import default_catalog
    from cryocloud.planner.model import nvme_holds

    refine = [ln for ln in spec.commands if cmdline.program(ln).startswith("relion_refine")]
    if not refine or any(cmdline.option(ln, "--scratch_dir") is not None for ln in refine):
        return False
    try:
        local_gb = default_catalog().get(instance_type).local_disk_gb
    except CryocloudError:
        return False
    return nvme_holds(spec.data_bytes / 1e9, local_gb)


def _pulled_bytes(cdir: Path) -> int:
    """Bytes of the outputs the lab pulled from S3 (what AWS charges as transfer out)."""
    try:
        return int((cdir / control.PULLED_BYTES).read_text())
    except (OSError, ValueError):
        return 0
