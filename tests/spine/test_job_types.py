"""Every RELION 3.1 job type: its job type from the folder, and the inputs its real command line reads."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import starfile

from cryocloud.jobs.inputs import discover_inputs
from cryocloud.jobs.relion import job_spec_from_script
from spine.helpers import make_job

OPTICS = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"]})


def star(blocks: dict[str, object], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    starfile.write(blocks, path)


def put(project: Path, rel: str, size: int = 10) -> None:
    (project / rel).parent.mkdir(parents=True, exist_ok=True)
    (project / rel).write_bytes(b"\0" * size)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RELION 3.1 project after Import -> ... -> PostProcess, with the files each step leaves."""
    p = tmp_path_factory.mktemp("types") / "proj"
    for m in ("m1", "m2"):
        put(p, f"Movies/{m}.tif")
        put(p, f"MotionCorr/job002/Movies/{m}.mrc")
        star({"general": {"rlnMicrographMovieName": f"Movies/{m}.tif", "rlnMicrographGainName": "Movies/gain.mrc"}},
                       p / f"MotionCorr/job002/Movies/{m}.star")
        star({"coordinates": pd.DataFrame({"rlnCoordinateX": [1.0], "rlnCoordinateY": [2.0]})},
                       p / f"AutoPick/job004/Movies/{m}_autopick.star")
        put(p, f"Extract/job005/Movies/{m}.mrcs")
    put(p, "Movies/gain.mrc")
    star({"fsc": pd.DataFrame({"rlnResolutionInversePixel": [0.0, 0.5], "rlnMtfValue": [1.0, 0.2]})},
         p / "mtf_k2_200kV.star")
    star({"optics": OPTICS, "movies": pd.DataFrame({"rlnMicrographMovieName": ["Movies/m1.tif", "Movies/m2.tif"],
                                                             "rlnOpticsGroup": 1})}, p / "Import/job001/movies.star")
    mics = pd.DataFrame({"rlnMicrographName": ["MotionCorr/job002/Movies/m1.mrc", "MotionCorr/job002/Movies/m2.mrc"],
                         "rlnMicrographMetadata": ["MotionCorr/job002/Movies/m1.star", "MotionCorr/job002/Movies/m2.star"],
                         "rlnOpticsGroup": 1})
    star({"optics": OPTICS, "micrographs": mics}, p / "MotionCorr/job002/corrected_micrographs.star")
    ctf = mics.drop(columns=["rlnMicrographMetadata"]).assign(
        rlnCtfImage=["CtfFind/job003/Movies/m1.ctf:mrc", "CtfFind/job003/Movies/m2.ctf:mrc"], rlnDefocusU=1e4)
    star({"optics": OPTICS, "micrographs": ctf}, p / "CtfFind/job003/micrographs_ctf.star")
    (p / "AutoPick/job004").mkdir(parents=True, exist_ok=True)
    (p / "AutoPick/job004/coords_suffix_autopick.star").write_text("CtfFind/job003/micrographs_ctf.star\n")
    parts = pd.DataFrame({"rlnImageName": ["1@Extract/job005/Movies/m1.mrcs", "1@Extract/job005/Movies/m2.mrcs"],
                          "rlnMicrographName": ["MotionCorr/job002/Movies/m1.mrc", "MotionCorr/job002/Movies/m2.mrc"],
                          "rlnOpticsGroup": 1})
    star({"optics": OPTICS, "particles": parts}, p / "Extract/job005/particles.star")
    star({"optics": OPTICS, "particles": parts}, p / "Refine3D/job007/run_data.star")
    for f in ("run_class001.mrc", "run_half1_class001_unfil.mrc", "run_half2_class001_unfil.mrc"):
        put(p, f"Refine3D/job007/{f}")
    put(p, "MaskCreate/job008/mask.mrc")
    star({"general": {"rlnFinalResolution": 3.1, "rlnUnfilteredMapHalf1": "Refine3D/job007/run_half1_class001_unfil.mrc",
                                "rlnUnfilteredMapHalf2": "Refine3D/job007/run_half2_class001_unfil.mrc",
                                "rlnMaskName": "MaskCreate/job008/mask.mrc"}}, p / "PostProcess/job009/postprocess.star")
    return p


M = ["Movies/m1.tif", "Movies/m2.tif"]
MICS = ["MotionCorr/job002/Movies/m1.mrc", "MotionCorr/job002/Movies/m2.mrc"]
HALVES = ["Refine3D/job007/run_half1_class001_unfil.mrc", "Refine3D/job007/run_half2_class001_unfil.mrc"]
CASES = [
    ("Import/job001/", 'relion_import --do_movies --optics_group_name "opticsGroup1" --angpix 0.885 --kV 200 --i "Movies/*.tif" '
     "--odir Import/job001/ --ofile movies.star --pipeline_control Import/job001/", M),
    ("MotionCorr/job010/", "relion_run_motioncorr --i Import/job001/movies.star --o MotionCorr/job010/ --use_own --j 2 "
     "--gainref Movies/gain.mrc --gain_rot 0 --dose_weighting --pipeline_control MotionCorr/job010/",
     [*M, "Import/job001/movies.star", "Movies/gain.mrc"]),
    ("CtfFind/job011/", "relion_run_ctffind --i MotionCorr/job002/corrected_micrographs.star --o CtfFind/job011/ --Box 512 "
     "--ctffind_exe /usr/bin/ctffind --is_ctffind4 --pipeline_control CtfFind/job011/", [*M, *MICS, "Movies/gain.mrc"]),
    ("AutoPick/job012/", "relion_autopick --i CtfFind/job003/micrographs_ctf.star --odir AutoPick/job012/ --pickname autopick "
     "--LoG --LoG_diam_min 150 --pipeline_control AutoPick/job012/", [*MICS, "CtfFind/job003/micrographs_ctf.star"]),
    ("Extract/job013/", "relion_preprocess --i CtfFind/job003/micrographs_ctf.star --coord_dir AutoPick/job004/ --coord_suffix "
     "_autopick.star --part_star Extract/job013/particles.star --part_dir Extract/job013/ --extract --extract_size 64 "
     "--norm --pipeline_control Extract/job013/",
     [*MICS, "AutoPick/job004/Movies/m1_autopick.star", "AutoPick/job004/Movies/m2_autopick.star"]),
    ("Class2D/job014/", "`which relion_refine` --o Class2D/job014/run --i Extract/job005/particles.star --ctf --iter 25 --K 50 "
     "--pipeline_control Class2D/job014/", ["Extract/job005/Movies/m1.mrcs", "Extract/job005/particles.star"]),
    ("InitialModel/job015/", "`which relion_refine` --sgd_ini_iter 50 --o InitialModel/job015/run --sgd --denovo_3dref --i "
     "Extract/job005/particles.star --ctf --K 1 --sym C1 --pipeline_control InitialModel/job015/", ["Extract/job005/Movies/m2.mrcs"]),
    ("Class3D/job016/", "`which relion_refine` --o Class3D/job016/run --i Extract/job005/particles.star --ref "
     "Refine3D/job007/run_class001.mrc --solvent_mask MaskCreate/job008/mask.mrc --K 4 --pipeline_control Class3D/job016/",
     ["Refine3D/job007/run_class001.mrc", "MaskCreate/job008/mask.mrc"]),
    ("Refine3D/job017/", "`which relion_refine_mpi` --o Refine3D/job017/run --auto_refine --split_random_halves --i "
     "Extract/job005/particles.star --ref Refine3D/job007/run_class001.mrc --pipeline_control Refine3D/job017/",
     ["Refine3D/job007/run_class001.mrc", "Extract/job005/particles.star"]),
    ("MaskCreate/job018/", "relion_mask_create --i Refine3D/job007/run_class001.mrc --o MaskCreate/job018/mask.mrc --lowpass 15 "
     "--pipeline_control MaskCreate/job018/", ["Refine3D/job007/run_class001.mrc"]),
    ("PostProcess/job019/", "relion_postprocess --mask MaskCreate/job008/mask.mrc --i Refine3D/job007/run_half1_class001_unfil.mrc "
     "--o PostProcess/job019/postprocess --mtf mtf_k2_200kV.star --auto_bfac --pipeline_control PostProcess/job019/",
     [*HALVES, "MaskCreate/job008/mask.mrc", "mtf_k2_200kV.star"]),
    ("Polish/job020/", "`which relion_motion_refine_mpi` --i Refine3D/job007/run_data.star --f PostProcess/job009/postprocess.star "
     "--corr_mic MotionCorr/job002/corrected_micrographs.star --o Polish/job020/ --combine_frames --pipeline_control Polish/job020/",
     [*HALVES, *M, "MaskCreate/job008/mask.mrc", "Extract/job005/Movies/m1.mrcs"]),
    ("CtfRefine/job021/", "`which relion_ctf_refine_mpi` --i Refine3D/job007/run_data.star --f PostProcess/job009/postprocess.star "
     "--o CtfRefine/job021/ --fit_defocus --pipeline_control CtfRefine/job021/", [*HALVES, "Refine3D/job007/run_data.star"]),
    ("Select/job022/", "relion_star_handler --i Extract/job005/particles.star --o Select/job022/particles.star --select "
     "rlnOpticsGroup --minval 1 --maxval 1 --pipeline_control Select/job022/", ["Extract/job005/Movies/m1.mrcs"]),
    ("External/job023/", "python3 my_picker.py --in_mics CtfFind/job003/micrographs_ctf.star --o External/job023/ --j 1",
     ["CtfFind/job003/micrographs_ctf.star", *MICS]),
]


@pytest.mark.parametrize("job_dir, command, expected", CASES, ids=[c[0].split("/")[0] for c in CASES])
def test_job_type_and_inputs(project: Path, job_dir: str, command: str, expected: list[str]) -> None:
    script = make_job(project, job_dir, [command], mpi=3 if "_mpi" in command else 1)
    spec = job_spec_from_script(script, project)
    assert spec.job_type == job_dir.split("/")[0]
    found = {f.path for f in spec.inputs}
    assert set(expected) <= found, sorted(set(expected) - found)
    assert not any(f.endswith((".ctf", ":mrc")) for f in found)  # CTFFIND's diagnostic spectra are not inputs
    assert not any(f.startswith(job_dir) for f in found)  # a job's own outputs are not its inputs


def test_relion_31_coords_suffix_file_names_the_micrographs(project: Path) -> None:
    found = {f.path for f in discover_inputs(project, "Extract/job030/", ["x --i AutoPick/job004/coords_suffix_autopick.star"])}
    assert {"AutoPick/job004/coords_suffix_autopick.star", "CtfFind/job003/micrographs_ctf.star", *MICS} <= found


def test_an_import_glob_that_matches_nothing_is_refused(project: Path) -> None:
    from cryocloud.errors import SubmissionError

    with pytest.raises(SubmissionError, match=r"Frames/\*\.tiff \(no file matches\)"):
        discover_inputs(project, "Import/job031/", ['relion_import --do_movies --i "Frames/*.tiff" --odir Import/job031/'])
