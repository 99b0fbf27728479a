"""The one RELION command-line reader (jobs/cmdline.py), on lines as RELION 3.1 writes them into a queue script."""

from __future__ import annotations

from cryocloud.jobs import cmdline

RELION_LINE = ('`which relion_refine_mpi` --o Class2D/job002/run --i "Extract/job001/my particles.star" --K 4 '
               '--iter 25 --gpu "0:1" --pipeline_control Class2D/job002/')


def test_the_program_behind_which_a_path_or_nothing() -> None:
    assert cmdline.program(RELION_LINE) == "relion_refine_mpi" and cmdline.is_mpi(RELION_LINE)
    assert cmdline.program("/opt/relion-3.1/bin/relion_run_ctffind --i x.star") == "relion_run_ctffind"
    assert not cmdline.is_mpi("relion_refine --o x") and cmdline.program("echo relion_refine") == ""
    assert RELION_LINE[:cmdline.program_end(RELION_LINE)] == "`which relion_refine_mpi`"


def test_options_with_quotes_numbers_and_no_value() -> None:
    assert cmdline.option(RELION_LINE, "--i") == "Extract/job001/my particles.star"
    assert cmdline.int_option(RELION_LINE, "--K") == 4 and cmdline.int_option(RELION_LINE, "--iter") == 25
    assert cmdline.option(RELION_LINE, "--gpu") == "0:1"
    assert cmdline.option("relion_refine --gpu --j 4", "--gpu") == ""  # present without devices
    assert cmdline.option(RELION_LINE, "--continue") is None and cmdline.int_option(RELION_LINE, "--o") is None
    assert cmdline.words('relion_refine --i "unbalanced') is None
    assert cmdline.option('relion_refine --i "unbalanced', "--i") is None


def test_removing_an_option_keeps_the_rest_as_written() -> None:
    out = cmdline.without_option(RELION_LINE, "--i")
    assert "my particles" not in out and out.startswith("`which relion_refine_mpi` --o Class2D/job002/run --K 4")
    assert ("--i", "Extract/job001/my particles.star") in cmdline.pairs(RELION_LINE)


def test_a_lab_line_made_portable_for_a_cloud_node() -> None:
    lab = {"/usr/local/relion-3.1/bin/": "/opt/relion/bin/"}
    assert cmdline.for_node('/usr/local/relion-3.1/bin/relion_refine_mpi --o x --gpu "0:1" --j 4', lab) == \
        '/opt/relion/bin/relion_refine_mpi --o x --gpu "" --j 4'
    assert cmdline.for_node("`which /usr/local/relion-3.1/bin/relion_refine` --gpu 0,1 --o y", lab) == \
        '`which /opt/relion/bin/relion_refine` --gpu "" --o y'
    assert cmdline.for_node("relion_refine --gpu --o y", lab) == "relion_refine --gpu --o y"  # all GPUs already
    assert cmdline.for_node("relion_refine --o /usr/local/relion-3.1/bin/x", lab) == \
        "relion_refine --o /usr/local/relion-3.1/bin/x"  # only the program is mapped
