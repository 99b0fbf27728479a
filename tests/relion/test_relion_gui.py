"""RELION's own GUI as a user meets it: the real `relion` (Debian's relion-gui) on a virtual screen (Xvfb),
driven by xdotool, runs a Class2D through cryocloud with "Submit to queue".

The test starts Xvfb on a display number Xvfb picks itself (-displayfd), and stops it and the GUI by PID. It waits
on windows (`xdotool search --sync`), on files (the job's exit marker, default_pipeline.star) and on what the
screen shows, never on a sleep. Clicks are at positions in RELION 3.1's fixed 800-pixel layout (gui_entries.h:
XCOL0 200, XCOL1 210, XCOL2 480, STEPY 20), relative to the main window, so they follow wherever it is. Screenshots
are kept in build/test-artifacts/relion-gui/ (docs/relion-gui-running-tab.png is a small copy of one).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cryocloud.jobs.relion import EXTRAS
from gate import wait_until
from relion_support import process_status, relion_env
from testtools import require_tool

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "relion-gui"
# RELION 3.1's layout (gui_entries.h): labels sit right-aligned in [XCOL1, XCOL2) of a tab that starts at XCOL0;
# a longer label runs past XCOL1 and the tab cuts it at XCOL0.
XCOL0, XCOL1, XCOL2 = 200, 210, 480
INPUT_X = 505  # a field's input box (sliders' boxes are 50 px wide from XCOL2; text fields are wider)
TAB_Y = 16
TABS = {"I/O": 215, "Optimisation": 322, "Sampling": 411, "Compute": 538, "Running": 612}
# Rows (the y of a field's middle, from the window's top) of the fields the test fills or looks at.
ROWS = {
    ("I/O", "Input images STAR file:"): 52,
    ("Optimisation", "Number of classes:"): 51,
    ("Optimisation", "Number of iterations:"): 105,
    ("Optimisation", "Mask diameter (A):"): 159,
    ("Sampling", "In-plane angular sampling:"): 73,
    ("Sampling", "Offset search step (pix):"): 117,
    ("Compute", "Number of pooled particles:"): 73,
    ("Running", "Number of threads:"): 73,
    ("Running", "extra1"): 167,
    ("Running", "extra2"): 189,
    ("Running", "extra3"): 211,
    ("Running", "extra4"): 233,
    ("Running", "Minimum dedicated cores per node:"): 276,
}
HELP_X = 686  # a field's "?" button
RUN_BUTTON = (740, 345)
RUNNING_JOBS_FIRST, FINISHED_JOBS_FIRST = (400, 445), (135, 445)  # the first row of each job list
JOB_TYPES_FIRST = (60, 44)  # "Import", the first entry of the job-type list
JOB_TYPES_DOWN = 7  # "2D classification" is the 8th entry of RELION 3.1's job-type list

def test_cryocloud_labels_fit_relions_label_column() -> None:
    """Each extra field's label is no longer than RELION's own longest label of the Running tab (which RELION
    shows whole); the explanation is in the help that RELION's "?" button shows."""
    from cryocloud.relion_setup import relion_environment
    from cryocloud.settings import load_settings

    longest_relion_label = "Minimum dedicated cores per node:"
    env = relion_environment(Path("/p/.cryocloud/relion_template.sh"), load_settings())
    labels = [env[f"RELION_QSUB_EXTRA{i}"] for i in range(1, len(EXTRAS) + 1)]
    assert labels == ["Wall time (HH:MM:SS):", "Max cost (USD):", "Machine:", "Split over N workers:"]
    assert all(len(label) <= len(longest_relion_label) for label in labels)
    for i in range(1, len(EXTRAS) + 1):
        help_text = env[f"RELION_QSUB_EXTRA{i}_HELP"]
        assert help_text.startswith("cryocloud: ") and "Empty:" in help_text and len(help_text) > 80


class Screen:
    """Xvfb on a free display it picks itself, and xdotool/screenshots on it."""

    def __init__(self, log: Path) -> None:
        require_tool("Xvfb")
        require_tool("xdotool")
        # Xvfb picks a free display and writes its number to -displayfd once it accepts clients (again at each
        # server reset: -noreset, and the read end stays open while Xvfb runs, or Xvfb dies writing it)
        self.read_end, write_end = os.pipe()
        with log.open("wb") as out:
            # Xvfb is the test's own virtual screen; tests may start processes directly
            self.proc = subprocess.Popen(
                ["Xvfb", "-displayfd", str(write_end), "-noreset", "-screen", "0", "1024x900x24", "-nolisten", "tcp"],
                pass_fds=(write_end,), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        os.close(write_end)
        ready, _, _ = select.select([self.read_end], [], [], 60)
        number = os.read(self.read_end, 64).decode().strip() if ready else ""
        if not number.isdigit():
            self.stop()
            raise AssertionError(f"Xvfb did not start: {log.read_text()[-2000:]}")
        self.display = f":{number}"

    def xdo(self, *args: str, timeout: float = 60) -> str:
        env = {**os.environ, "DISPLAY": self.display}
        p = subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
        assert p.returncode == 0, f"xdotool {' '.join(args)}: {p.stderr}"
        return p.stdout

    def windows(self) -> list[str]:
        """Ids of the mapped top-level windows (no window manager: every one is a client's), without the root."""
        env = {**os.environ, "DISPLAY": self.display}

        def search(depth: str) -> list[str]:
            p = subprocess.run(["xdotool", "search", "--onlyvisible", "--maxdepth", depth, "--name", ""], env=env,
                               capture_output=True, text=True, timeout=60, check=False)
            return p.stdout.split()  # exit 1 with no output: none

        root = search("0")
        return [w for w in search("1") if w not in root]

    def geometry(self, window: str) -> dict[str, int]:
        out = self.xdo("getwindowgeometry", "--shell", window)
        return {k: int(v) for k, _, v in (line.partition("=") for line in out.splitlines()) if k != "SCREEN"}

    def grab(self, window: str) -> Any:
        from PIL import ImageGrab

        g = self.geometry(window)
        return ImageGrab.grab(bbox=(g["X"], g["Y"], g["X"] + g["WIDTH"], g["Y"] + g["HEIGHT"]),
                              xdisplay=self.display).convert("RGB")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)
        os.close(self.read_end)


@pytest.fixture()
def screen(tmp_path: Path) -> Iterator[Screen]:
    s = Screen(tmp_path / "xvfb.log")
    yield s
    s.stop()


class Gui:
    """The RELION GUI's main window, driven as a user would."""

    def __init__(self, screen: Screen, window: str) -> None:
        self.screen, self.window = screen, window

    def click(self, x: int, y: int) -> None:
        self.screen.xdo("mousemove", "--window", self.window, str(x), str(y), "click", "1")

    def tab(self, name: str) -> None:
        self.click(TABS[name], TAB_Y)

    def fill(self, tab: str, field: str, value: str, x: int = INPUT_X) -> None:
        self.click(x, ROWS[(tab, field)])
        self.screen.xdo("key", "ctrl+a")
        self.screen.xdo("type", "--delay", "5", value)
        self.screen.xdo("key", "Tab")  # leave the field, as a user does

    def shot(self) -> Any:
        return self.screen.grab(self.window)


def _ink(image: Any, x0: int, x1: int, y: int) -> list[int]:
    """x positions in [x0, x1) of the row band around y where text is drawn (dark pixels)."""
    return [x for x in range(x0, x1) for dy in range(-6, 7) if sum(image.getpixel((x, y + dy))) < 3 * 140]


def _label_extent(image: Any, y: int) -> tuple[int, int] | None:
    """Leftmost and rightmost ink of the label in the row at y (the label column and the tab's margin)."""
    ink = _ink(image, XCOL0 + 2, XCOL2 - 2, y)
    return (min(ink), max(ink)) if ink else None


def _start_relion(project: Path, screen: Screen) -> subprocess.Popen[bytes]:
    env = {**relion_env(project), "DISPLAY": screen.display}
    with (ARTIFACTS / "relion.log").open("wb") as log:
        # the GUI is the subject of this test, started as a user would from the project folder
        return subprocess.Popen(["relion"], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(30)


@pytest.mark.integration
@pytest.mark.slow
def test_class2d_from_relions_gui(demo_project: Path, screen: Screen) -> None:
    require_tool("relion")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert (demo_project / ".gui_projectdir").exists(), "demo-data must mark the folder as a RELION project"
    # Without RELION's marker (a folder RELION never saw), the GUI asks before it opens anything
    unmarked = demo_project.parent / "unmarked"
    unmarked.mkdir()
    relion = _start_relion(unmarked, screen)
    try:
        assert wait_until(lambda: screen.windows(), 120), "RELION showed no window"
        question = screen.windows()
        assert len(question) == 1 and not screen.xdo("getwindowname", question[0]).startswith("RELION-")
        screen.grab(question[0]).save(ARTIFACTS / "question-without-marker.png")
    finally:
        _stop(relion)
    assert wait_until(lambda: not screen.windows(), 60)

    relion = _start_relion(demo_project, screen)
    try:
        main = screen.xdo("search", "--sync", "--onlyvisible", "--name", "^RELION-", timeout=120).split()[0]
        title = screen.xdo("getwindowname", main).strip()  # "RELION-3.1.3: <project>", cut on the left if long
        assert title.endswith(demo_project.name), title
        assert screen.windows() == [main], "RELION asked something before opening the project"
        assert screen.geometry(main)["WIDTH"] == 800, "not RELION 3.1's 800-pixel layout: the positions are off"
        gui = Gui(screen, main)

        screen.xdo("windowfocus", "--sync", main)
        gui.click(*JOB_TYPES_FIRST)  # the job-type list takes the keyboard
        screen.xdo("key", "--delay", "20", *["Down"] * JOB_TYPES_DOWN)
        gui.fill("I/O", "Input images STAR file:", "Synthetic/particles.star", x=578)
        gui.tab("Optimisation")
        gui.fill("Optimisation", "Number of classes:", "2")
        gui.fill("Optimisation", "Number of iterations:", "3")
        gui.fill("Optimisation", "Mask diameter (A):", "150")
        gui.tab("Sampling")  # coarse: a few seconds on 2 cores
        gui.fill("Sampling", "In-plane angular sampling:", "12")
        gui.fill("Sampling", "Offset search step (pix):", "2")
        gui.tab("Compute")
        gui.fill("Compute", "Number of pooled particles:", "30")
        gui.tab("Running")
        gui.fill("Running", "Number of threads:", "2")
        gui.fill("Running", "extra1", "00:10:00", x=578)

        # The Running tab as the user sees it: cryocloud's fields with whole labels, inside RELION's label column
        extra_rows = [ROWS[("Running", f"extra{i}")] for i in range(1, len(EXTRAS) + 1)]
        assert wait_until(lambda: all(_label_extent(gui.shot(), y) for y in extra_rows), 60), \
            "the Running tab never showed cryocloud's fields"
        running_tab = gui.shot()
        running_tab.save(ARTIFACTS / "running-tab.png")
        for y in [*extra_rows, ROWS[("Running", "Minimum dedicated cores per node:")]]:
            extent = _label_extent(running_tab, y)
            assert extent is not None and extent[0] >= XCOL1, f"the label at y={y} is cut: ink from x={extent}"

        # RELION's "?" beside "Wall time" opens cryocloud's explanation in a window of its own
        gui.click(HELP_X, ROWS[("Running", "extra1")])
        assert wait_until(lambda: len(screen.windows()) == 2, 60), "the ? button opened nothing"
        help_window = next(w for w in screen.windows() if w != main)
        screen.grab(help_window).save(ARTIFACTS / "help-wall-time.png")
        screen.xdo("windowfocus", "--sync", help_window)
        screen.xdo("key", "Escape")  # FLTK closes a window on Escape
        assert wait_until(lambda: screen.windows() == [main], 60)

        gui.click(*RUN_BUTTON)
        job = demo_project / "Class2D" / "job001"
        assert wait_until(lambda: (job / "RELION_JOB_EXIT_SUCCESS").exists(), 600), "the job never ended"
        # no click: RELION's GUI re-reads job states when the project holds .pipeline_has_changed, which cryocloud
        # touches at the job's end (else the job would stay under "Running jobs" until the user clicked it)
        assert wait_until(lambda: _status(demo_project).get("Class2D/job001/") == "succeeded", 120)
        assert wait_until(lambda: _ink(gui.shot(), 14, 256, FINISHED_JOBS_FIRST[1])
                          and not _ink(gui.shot(), 280, 520, RUNNING_JOBS_FIRST[1]), 60), \
            "the job is not shown in Finished jobs"
        gui.shot().save(ARTIFACTS / "finished.png")
    finally:
        _stop(relion)

    command = (job / "note.txt").read_text()
    for flag in ("--i Synthetic/particles.star", "--K 2", "--iter 3", "--particle_diameter 150", "--pool 30",
                 "--j 2", "--psi_step 24", "--offset_step 4"):
        assert flag in command, f"{flag} (filled in the GUI) is not in RELION's command"
    assert "00:10:00" in (job / "run_submit.script").read_text()
    assert "[cryocloud" in (job / "run.out").read_text()
    assert (job / "run_it003_classes.mrcs").exists()


def _status(project: Path) -> dict[str, str]:
    """RELION's view of the jobs; {} while the GUI is rewriting the file."""
    try:
        return process_status(project)
    except Exception:
        return {}
