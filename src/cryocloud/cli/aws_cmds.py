"""aws bootstrap."""

from __future__ import annotations

import click


@click.group()
def aws() -> None:
    """A lab's AWS account (or the sandbox's): made ready for cryocloud's nodes."""


@aws.command()
@click.option("--bucket", default="", help="The lab's bucket (default: from [storage] url s3://BUCKET/PREFIX).")
@click.option("--prefix", default="", help="The prefix the nodes may use (default: from [storage] url, else cryocloud).")
@click.option("--region", default="", help="Default: [aws] region.")
@click.option("--dry-run", is_flag=True, help="Only look: say what it would make.")
@click.option("--yes", is_flag=True, help="Replace a node policy that differs from cryocloud's (edited by hand).")
@click.option("--private-subnet", is_flag=True,
              help="Also a subnet with no public IP and no route to the Internet, with a (free) S3 gateway endpoint.")
def bootstrap(bucket: str, prefix: str, region: str, dry_run: bool, yes: bool, private_subnet: bool) -> None:
    """Make the account ready, once (idempotent): the encrypted, private bucket; the node role, allowed the lab's
    prefix of that bucket and nothing else; its instance profile; a security group with no inbound rule.
    Prints what it made and what it found. The policy, for an admin who makes the role by hand: docs/aws-policy.json.

    \b
    cryocloud aws bootstrap --dry-run
    cryocloud aws bootstrap --bucket my-lab-cryoem --region eu-west-1
    """
    import os

    import boto3

    from cryocloud.aws.bootstrap import Bootstrap
    from cryocloud.errors import CryocloudError
    from cryocloud.settings import load_settings

    settings = load_settings()
    url = settings.storage.url
    if not bucket and url.startswith("s3://"):
        bucket, _, from_url = url.removeprefix("s3://").partition("/")
        prefix = prefix or from_url
    if not bucket:
        raise CryocloudError("which bucket?", "give --bucket NAME, or set [storage] url = \"s3://NAME/PREFIX\"")
    endpoints = {s: os.environ.get(f"AWS_ENDPOINT_URL_{s.upper()}", "") for s in ("ec2", "iam", "sts")}
    endpoints["s3"] = settings.storage.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3", "")
    steps = Bootstrap(boto3.session.Session(), bucket, prefix or "cryocloud", region or settings.aws.region,
                      dry_run=dry_run, yes=yes, endpoints=endpoints,
                      ca_bundle=settings.storage.ca_bundle or os.environ.get("AWS_CA_BUNDLE", ""),
                      private_subnet=private_subnet).run()
    for step in steps:
        click.echo(step.line())
    if not dry_run:
        from cryocloud.aws import profiles

        made = profiles.ensure(settings.config_path, {
            "region": region or settings.aws.region, "staging": f"s3://{bucket}/{prefix or 'cryocloud'}",
            "images": {}}, "written by `cryocloud aws bootstrap`")
        click.echo("profiles " + ", ".join(f"{n} ({how})" for n, how in made) + f" in {settings.config_path}")
        if any(how == "made" for _, how in made):
            click.echo("hint: add the AMI of each RELION version you run to images in those profiles "
                       "(docs/node-image.md builds one)", err=True)
    if any(s.status == "differs" for s in steps):
        click.echo("hint: what differs was left as it is; rerun with --yes to replace the node policy", err=True)
        raise click.exceptions.Exit(1)
