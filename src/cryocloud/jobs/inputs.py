"""Find every file a RELION job reads by following STAR files, not by guessing per job type.

Seeds are the job's input edges in default_pipeline.star and the files named after the input flags of its
command lines; every STAR file found is read (gemmi's STAR/CIF parser, as the CCP-EM Pipeliner reads them: it
keeps the submit path fast, BENCHMARKS.md) and the path-valued labels below are followed,
recursively (particles -> stacks, micrographs -> movies, per-movie metadata -> movie, gain, defects;
optimiser -> model, data, sampling, masks). Paths resolve against the project folder, as RELION resolves them.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryocloud.errors import SubmissionError
from cryocloud.jobs import cmdline
from cryocloud.jobs.spec import InputFile

# STAR labels whose values are paths to files the job reads. One table for every job type.
PATH_LABELS = frozenset({
    "rlnImageName", "rlnReconstructImageName", "rlnMicrographName", "rlnMicrographNameNoDW",
    "rlnMicrographMovieName", "rlnMicrographMetadata", "rlnMicrographGainName", "rlnMicrographDefectFile",
    "rlnMtfFileName", "rlnReferenceImage", "rlnMaskName", "rlnSolventMaskName",
    "rlnSolventMask2Name", "rlnBodyMaskName", "rlnBodyReferenceName", "rlnModelStarFile",
    "rlnModelStarFile2", "rlnExperimentalDataStarFile", "rlnOrientSamplingStarFile",
    "rlnMicrographCoordinates", "rlnUnfilteredMapHalf1", "rlnUnfilteredMapHalf2",
})
# (rlnCtfImage, CTFFIND's diagnostic spectra, is left out: no job reads it back.)
PARTICLE_LABELS = frozenset({"rlnImageName", "rlnReconstructImageName"})
# Files that are never inputs (diagnostics written next to inputs).
SKIP_SUFFIXES = (".log", ".pdf", ".eps")
# Command-line flags followed by a path the program reads (RELION 3.1-5.0 programs).
INPUT_FLAGS = frozenset({
    "--i", "--ref", "--solvent_mask", "--solvent_mask2", "--mask", "--continue", "--mic", "--in_movies",
    "--in_mics", "--in_parts", "--gainref", "--defect_file", "--mtf", "--fn_in", "--half1", "--half2",
    "--f", "--reextract_data_star", "--coord_list", "--multibody_masks", "--mic_star", "--corr_mic",
    "--in_model", "--opt", "--ini_model", "--fn_mtf", "--fn_cont", "--particles",
})
NUMBERED_IMAGE = re.compile(r"^\d+@")
TYPE_SUFFIX = re.compile(r":(mrcs?|tiff?|eer|spi)$")  # RELION's "file.ctf:mrc" names a file and its type
GLOB = re.compile(r"[*?\[]")
# A file that implies its companion: RELION reads half2 wherever it is given half1 (PostProcess, LocalRes).
COMPANIONS = (("_half1_", "_half2_"),)
# RELION 3.1's coords_suffix_<name>.star is a one-line text file naming the micrographs STAR, not a STAR file.
COORDS_SUFFIX = re.compile(r"(^|/)coords_suffix_[^/]*\.star$")


@dataclass(frozen=True)
class Loop:
    """One loop_ table of a STAR data block: label (without the leading '_') -> its column of values."""

    columns: dict[str, list[str]]


Block = Loop | dict[str, str]  # a loop, or key-value pairs
MISSING = ("", ".", "?")  # STAR's null values


def read_star(path: Path) -> dict[str, Block]:
    """The data blocks of a STAR file by name: each one loop, or its key-value pairs."""
    import gemmi

    hint = "check the file RELION wrote, or re-run the job that produced it"
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        if b"\0" in head:
            raise ValueError("binary content")
        doc = gemmi.cif.read_file(str(path))
    except Exception as e:  # gemmi raises RuntimeError/ValueError with the line of the fault
        raise SubmissionError(f"{path}: not a readable STAR file ({type(e).__name__}: {e})", hint) from None
    if not len(doc) and path.stat().st_size:
        raise SubmissionError(f"{path}: not a readable STAR file (no data block in it)", hint)
    blocks: dict[str, Block] = {}
    for block in doc:
        pairs: dict[str, str] = {}
        for item in block:
            if item.loop is not None:
                width, values = item.loop.width(), [gemmi.cif.as_string(v) for v in item.loop.values]
                blocks[block.name] = Loop({t.lstrip("_"): values[i::width] for i, t in enumerate(item.loop.tags)})
            elif item.pair is not None:
                pairs[item.pair[0].lstrip("_")] = gemmi.cif.as_string(item.pair[1])
        if pairs and block.name not in blocks:
            blocks[block.name] = pairs
    return blocks


def _values(block: Block) -> Iterable[str]:
    """Path-valued entries of one STAR data block (a loop table or key-value pairs), each value once."""
    if isinstance(block, dict):
        for label, value in block.items():
            if label in PATH_LABELS and value not in MISSING:
                yield value
        return
    # A particle table names the micrographs particles were cut from; a job on particles never reads them.
    labels = PARTICLE_LABELS if "rlnImageName" in block.columns else PATH_LABELS
    for label, column in block.columns.items():
        if label in labels:
            yield from dict.fromkeys(v for v in column if v not in MISSING)


def _project_relative(path: Path, project: Path) -> str:
    try:
        return str(path.relative_to(project))
    except ValueError:
        return str(path)


def pipeline_input_edges(project: Path, job_dir: str) -> list[str]:
    """Input nodes of `job_dir` recorded in the project's default_pipeline.star and in the job folder's own
    job_pipeline.star (RELION writes both; the CCP-EM Pipeliner names its project file after the project, so its
    job_pipeline.star is where its edges are found). Empty if neither has any."""
    nodes: list[str] = []
    for pipeline in (project / "default_pipeline.star", project / job_dir / "job_pipeline.star"):
        if not pipeline.exists():
            continue
        edges = read_star(pipeline).get("pipeline_input_edges")
        if not isinstance(edges, Loop) or \
                not {"rlnPipeLineEdgeProcess", "rlnPipeLineEdgeFromNode"} <= edges.columns.keys():
            continue
        nodes += [node for node, process in zip(edges.columns["rlnPipeLineEdgeFromNode"],
                                                edges.columns["rlnPipeLineEdgeProcess"], strict=True)
                  if process == job_dir and node not in nodes]
    return nodes


def command_inputs(commands: Iterable[str]) -> list[str]:
    """Paths named after the input flags of the job's command lines."""
    out = []
    for line in commands:
        words = cmdline.words(line)
        if words is None:
            continue
        out += [value for flag, value in cmdline.pairs(line) if flag in INPUT_FLAGS]
        if "--coord_dir" in words and "--coord_suffix" in words:  # Extract: <dir>/<micrograph><suffix>
            folder = words[words.index("--coord_dir") + 1].rstrip("/")
            suffix = words[words.index("--coord_suffix") + 1]
            out.append(f"{folder}/**/*{suffix}")
    return out


def discover_inputs(project: Path, job_dir: str, commands: list[str]) -> list[InputFile]:
    """Every file the job reads, with its size. Raises SubmissionError naming missing files."""
    project = project.resolve()
    seeds = pipeline_input_edges(project, job_dir) + command_inputs(commands)
    seen: dict[str, int] = {}
    missing: list[tuple[str, str]] = []  # (path, named by)
    queue: list[tuple[str, str]] = [(s, "the job's command line or pipeline") for s in seeds]
    while queue:
        name, named_by = queue.pop()
        name = TYPE_SUFFIX.sub("", NUMBERED_IMAGE.sub("", name.strip()))
        if not name:
            continue
        if GLOB.search(name):  # relion_import's --i "Movies/*.tif", Extract's coordinate files
            matches = sorted(glob.glob(name, root_dir=project, recursive=True))
            if not matches:
                missing.append((f"{name} (no file matches)", named_by))
            queue.extend((m, named_by) for m in matches)
            continue
        for first, second in COMPANIONS:
            if first in name:
                queue.append((name.replace(first, second), f"{named_by}, as the companion of {name}"))
        path = Path(name) if os.path.isabs(name) else project / name
        key = _project_relative(path, project)
        if key in seen or name.endswith(SKIP_SUFFIXES):
            continue
        try:
            size = path.stat().st_size
        except OSError:
            if path.is_symlink():
                missing.append((key + " (a broken link)", named_by))
            else:
                missing.append((key, named_by))
            seen[key] = -1
            continue
        if path.is_dir():
            continue
        seen[key] = size
        if COORDS_SUFFIX.search(name):
            queue.append((path.read_text(errors="replace").strip().split("\n")[0], key))
        elif path.suffix == ".star":
            for block in read_star(path).values():
                queue.extend((v, key) for v in _values(block))
    if missing:
        first = "; ".join(f"{p} (named in {by})" for p, by in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise SubmissionError(
            f"the job's inputs name {len(missing)} missing file(s): {first}{more}",
            "paths in STAR files resolve against the project folder; restore the files or re-run the job that made them",
        )
    return [InputFile(path=p, size=s) for p, s in sorted(seen.items()) if s >= 0]
