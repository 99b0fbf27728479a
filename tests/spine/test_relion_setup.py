from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from cryocloud.cli.main import main
from cryocloud.jobs.relion import read_script
from spine.helpers import fill_template


def test_setup_writes_template_and_evalable_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["relion", "setup", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    env = {}
    for line in out.splitlines():
        assert line.startswith("export ")
        name, _, value = line[len("export "):].partition("=")
        env[name] = shlex.split(value)[0] if value else ""
    template = Path(env["RELION_QSUB_TEMPLATE"])
    assert template == tmp_path / ".cryocloud" / "relion_template.sh" and os.access(template, os.X_OK)
    assert Path(env["RELION_QSUB_COMMAND"]).name == "cryocloud-qsub" and os.access(env["RELION_QSUB_COMMAND"], os.X_OK)
    assert env["PIPELINER_QSUB_COMMAND"] == env["RELION_QSUB_COMMAND"]
    assert env["RELION_QUEUE_USE"] == "true" and env["RELION_QSUB_EXTRA_COUNT"] == "4"
    assert "Submit to queue?" in err and "Standard submission script" in err
    # the template, once filled the way RELION fills it, is what `submit` reads
    filled = tmp_path / "s.sh"
    text = template.read_text()
    assert "XXXcommandXXX" in text and "mpirun" not in text.replace("Do not add mpirun", "")
    filled.write_text(fill_template("Class2D/job001/", ["relion_refine --o x"]))
    assert read_script(filled).job_dir == "Class2D/job001/"


def test_setup_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["relion", "setup", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("args, needle", [(["--particles", "3"], "out of range"), (["--noise", "-1"], "negative")])
def test_demo_data_bad_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    assert main(["demo-data", str(tmp_path / "p"), *args]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_unknown_command_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stauts"]) == 2
    assert "did you mean 'status'" in capsys.readouterr().err
