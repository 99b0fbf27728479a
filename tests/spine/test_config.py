from __future__ import annotations

from pathlib import Path

import pytest

from cryocloud.errors import ConfigError
from cryocloud.settings import load_settings


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load_settings(env={"CRYOCLOUD_HOME": str(tmp_path)}, path=tmp_path / "none.toml")
    assert s.general.default_profile == "local"
    assert s.general.workstation_usd_per_hour == 0.63
    assert s.profile("local").backend == "local"


def test_env_overrides_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "workstation_usd_per_hour = 1.5\n[local]\ncpus = 4\n")
    s = load_settings(env={"CRYOCLOUD_LOCAL_CPUS": "8"}, path=cfg)
    assert s.general.workstation_usd_per_hour == 1.5
    assert s.local_cpus == 8


def test_backend_env_sets_default_profile(tmp_path: Path) -> None:
    s = load_settings(env={"CRYOCLOUD_BACKEND": "local"}, path=tmp_path / "none.toml")
    assert s.general.default_profile == "local"


@pytest.mark.parametrize("text, needle, hint", [
    ("workstation_usd_per_hr = 1\n", "unknown key or section 'workstation_usd_per_hr'", "workstation_usd_per_hour"),
    ("[local]\ncpu = 2\n", "unknown key 'cpu' in [local]", "cpus"),
    ("[local]\ncpus = 'many'\n", "local.cpus = 'many' is not a valid int", "fix the value"),
    ("[local]\ncpus = -1\n", "must not be negative", "fix the value"),
    ("[profiles.gpu]\nbackend = 'slurmm'\n", "unknown backend 'slurmm'", ""),
    ("[profiles.gpu]\npartition = 'x'\n", "needs a backend key", "backend ="),
    ("[budgets]\nbetagal = 10\n", "not 'project:NAME'", "project:betagal"),
    ("default_profile = 'lcoal'\n", "unknown backend or profile 'lcoal'", "'local'"),
    ("[local\ncpus = 2\n", "not valid TOML", "quotes and brackets"),
])
def test_config_typos_are_clear_errors(tmp_path: Path, text: str, needle: str, hint: str) -> None:
    cfg = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as e:
        load_settings(env={}, path=cfg)
    assert needle in e.value.message
    assert hint in e.value.hint


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(env={"CRYOCLOUD_WORKSTATION_USD_PER_HOUR": "cheap"}, path=tmp_path / "none.toml")
    assert "CRYOCLOUD_WORKSTATION_USD_PER_HOUR" in e.value.message


def test_a_mistyped_environment_variable_is_refused_like_a_config_typo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYOCLOUD_DEFAULT_PROFIL", "hpc")
    with pytest.raises(ConfigError, match="unknown environment variable CRYOCLOUD_DEFAULT_PROFIL") as e:
        load_settings()
    assert "CRYOCLOUD_DEFAULT_PROFILE" in e.value.hint
    monkeypatch.delenv("CRYOCLOUD_DEFAULT_PROFIL")
    monkeypatch.setenv("CRYOCLOUD_LOCAL_CPUS", "2")  # every documented name still works
    monkeypatch.setenv("CRYOCLOUD_SCRATCH", "/tmp")
    assert load_settings().local.cpus == 2


def test_cryocloud_home_and_its_ledger_are_private(cryocloud_home: Path) -> None:
    import os
    import stat

    from cryocloud.ledger import Ledger

    old = os.umask(0o022)
    try:
        settings = load_settings()
        Ledger(settings.ledger_path).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(cryocloud_home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(settings.ledger_path).st_mode) == 0o600


def test_a_damaged_ledger_says_so_and_how_to_recover(cryocloud_home: Path) -> None:
    from cryocloud.errors import CryocloudError
    from cryocloud.ledger import Ledger

    settings = load_settings()
    cryocloud_home.mkdir(parents=True, exist_ok=True)
    settings.ledger_path.write_bytes(b"this is not an SQLite file at all, just text that got here" * 20)
    with pytest.raises(CryocloudError, match="is damaged") as e:
        Ledger(settings.ledger_path)
    assert "mv " in e.value.hint and ".damaged" in e.value.hint and "writable" not in e.value.hint


@pytest.mark.integration
def test_a_damaged_ledger_is_restored_from_the_monitors_backup(tmp_path: Path, cryocloud_home: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from cryocloud.app.submit import submit_script
    from cryocloud.cli.main import main
    from cryocloud.ledger import backup_path
    from spine.helpers import in_dir, job_state, make_job, wait_for

    make_job(tmp_path, "External/job001/", ["echo done"])
    with in_dir(tmp_path):
        job = submit_script(Path("External/job001/run_submit.script"), tmp_path).job.id
    settings = load_settings()
    saved = backup_path(settings.ledger_path)
    assert wait_for(lambda: saved.exists())  # the monitor backs the ledger up when it leaves
    assert wait_for(lambda: job_state(job) == "succeeded")
    capsys.readouterr()
    assert main(["ledger", "check"]) == 0
    assert "is sound: 1 jobs" in capsys.readouterr().out
    # a disk error: the file's first page is garbage now
    with open(settings.ledger_path, "r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 1024)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err and "cryocloud ledger check --restore" in err
    assert main(["ledger", "check"]) == 1
    assert "--restore" in capsys.readouterr().err
    assert main(["ledger", "check", "--restore"]) == 0
    assert "restored the backup (1 jobs)" in capsys.readouterr().out
    assert [p.name for p in cryocloud_home.glob("ledger.sqlite.damaged-*")]  # kept, never deleted
    assert main(["status"]) == 0
    assert job_state(job) == "succeeded"
