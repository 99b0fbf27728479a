"""The AWS profiles `sandbox up` and `aws bootstrap` leave in the config: appended, never rewriting what is there."""

from __future__ import annotations

from pathlib import Path

from cryocloud.aws import profiles
from cryocloud.backends.aws.options import AwsOptions
from cryocloud.settings import load_settings


def test_profiles_are_added_once_and_a_lab_edit_is_kept(cryocloud_home: Path) -> None:
    config = cryocloud_home / "config.toml"
    config.parent.mkdir(parents=True)
    mine = '# my lab\n[profiles.aws]\nbackend = "aws"\nmarket = "spot"\nregion = "eu-west-1"\n'
    config.write_text(mine)
    common = {"region": "us-east-1", "staging": "s3://lab-bucket/cryocloud", "images": {"3.1.3": "ami-0123"},
              "python": '/opt/my "odd" python'}
    assert profiles.ensure(config, common, "written by a test") == [
        ("aws", "found"), ("aws-spot", "made"), ("aws-ondemand", "made")]
    assert config.read_text().startswith(mine)
    settings = load_settings()
    assert AwsOptions.from_profile("aws", settings.profile("aws").options).region == "eu-west-1"  # the lab's edit
    spot = AwsOptions.from_profile("aws-spot", settings.profile("aws-spot").options)
    assert (spot.market, spot.images, spot.python) == ("spot", {"3.1.3": "ami-0123"}, '/opt/my "odd" python')
    assert AwsOptions.from_profile("aws-ondemand", settings.profile("aws-ondemand").options).market == "on-demand"
    before = config.read_text()
    assert [how for _, how in profiles.ensure(config, common, "again")] == ["found"] * 3
    assert config.read_text() == before
