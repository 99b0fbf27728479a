"""`cryocloud watch`: a microscope session uploaded and preprocessed while it is collected.

Each pass: detect the movies that are complete (session/detect.py) and record them in the ledger, each once; upload
what is not archived yet (a worker thread: session_upload.py); when the batching rule says so (session/batching.py),
let the oldest waiting movies join a new batch (one transaction), link them into the project's link folder (the
only folder RELION's Import reads: never the microscope's own) and run the session's RELION jobs over it with
`relion_pipeliner --RunJobs` (session/relion.py). One batch runs at a time; a batch's outcome is read from RELION's
own STAR files and the pipeline's states. Restart-safe: a batch left running by a watcher that died is run again
(RELION's --only_do_unfinished skips what was done) once its pipeliner and its cryocloud jobs have ended.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryocloud.app import session_numbers
from cryocloud.app.session_upload import Round, manifest_name, upload
from cryocloud.errors import CryocloudError
from cryocloud.ledger import Ledger
from cryocloud.proc import pid_alive, process_start_time
from cryocloud.session import batching, records, relion
from cryocloud.session import settings as session_settings
from cryocloud.session.detect import Detector, check_movie
from cryocloud.session.records import CORRECTED, FAILED, REJECTED, SETTLED
from cryocloud.settings import Settings, load_settings

UPLOAD_ROUND = 2000  # movies per upload round at most


@dataclass(frozen=True)
class WatchRequest:
    session_dir: Path
    project: Path
    settings_path: Path
    profile: str = ""
    upload: str = ""  # store URL; "" = no archive copy
    until_idle: float | None = None  # end once nothing arrived and all work is done for this long
    retry_failed: bool = False  # movies RELION made no micrograph of join a new batch (e.g. after a full disk)


def settings_path(project: Path, given: Path | None) -> Path:
    return given if given is not None else project / session_settings.FILE_NAME


def init_settings(path: Path, pixel_size: float = 0.0, dose: float = 0.0) -> Path:
    """Write the commented session file (never over an existing one)."""
    if path.exists():
        raise CryocloudError(f"{path} exists already", "edit it, or give another path with --settings")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(session_settings.init_text(pixel_size, dose), encoding="utf-8")
    except OSError as e:
        raise CryocloudError(f"cannot write {path}: {e.strerror}", "choose a writable folder with --settings") from None
    return path


def link_name(rel: str) -> str:
    """A movie's name in the link folder: its path in the session, flattened (Import reads one folder)."""
    return rel.replace("/", "__")


def _relion_env(project: Path, settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    import sys

    from cryocloud.relion_setup import relion_environment, write_template

    env = dict(base)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
    env.update(relion_environment(write_template(project), settings))
    return relion.environment(env)


def _is_watcher(pid: int) -> bool:
    """Is `pid` a running watcher (not a process that reused the pid of one that died)?"""
    if not pid_alive(pid):
        return False
    try:
        return b"watch" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class Watcher:
    def __init__(self, req: WatchRequest, settings: Settings | None = None, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.req = req
        self.clock = clock
        self.cryo = settings or load_settings()
        if not req.project.is_dir():
            raise CryocloudError(f"no RELION project folder {req.project}", "give --project the project's folder "
                                 "(a new, empty folder is fine: the watcher makes the pipeline)")
        if not req.session_dir.is_dir():
            raise CryocloudError(f"no session folder {req.session_dir}",
                                 "check the path, and that the microscope's share is mounted")
        self.s = session_settings.load(req.settings_path)
        if req.profile:
            self.cryo.profile(req.profile)  # an unknown profile: refused now, with its hint
        self.project = req.project.resolve()
        self.session_dir = req.session_dir.resolve()
        self.ledger = Ledger(self.cryo.ledger_path)
        self.session = records.open_session(self.ledger.db, str(self.session_dir), str(self.project), req.profile,
                                            req.upload, self.cryo.user)
        other = self.session.watcher_pid
        if other and other != os.getpid() and _is_watcher(other):
            self.ledger.close()
            raise CryocloudError(f"another watcher (pid {other}) is watching {self.session_dir} into {self.project}",
                                 f"one watcher per session: stop it first (kill {other}), or watch from it")
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", self.session_dir.name) or "session"
        self.link_dir = f"Movies/{base}"
        self.env = _relion_env(self.project, self.cryo, os.environ if env is None else env)
        self.store = None
        if req.upload:
            from cryocloud.storage.stores import open_store

            self.store = open_store(req.upload, self.cryo)
        self.detector = Detector(self.session_dir, self.s.settle_seconds, self.s.stuck_seconds,
                                 records.movie_names(self.ledger.db, self.session.id))
        self.problems: dict[str, str] = {}
        self.growing = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="upload")
        self.uploading: Future[Round] | None = None
        self.run: relion.Run | None = None
        self.batch: int | None = None
        self.recorded_pid = 0
        self.last_activity = clock()
        self.jobs: dict[str, str] = dict(self.session.relion_jobs)

    # ---- set-up ------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """The session's RELION jobs (once per project); rejected movies checked again (the settings may be fixed)."""
        (self.project / self.link_dir).mkdir(parents=True, exist_ok=True)
        queue = self.req.profile or self.env.get("RELION_QUEUE_NAME", "default")
        self.jobs = relion.add_jobs(self.project, self.s, self.link_dir, self.env, queue, self.jobs)
        records.update_session(self.ledger.db, self.session.id, relion_jobs=self.jobs, watcher_pid=os.getpid())
        self.session = records.session_by_id(self.ledger.db, self.session.id) or self.session
        for r in records.movies(self.ledger.db, self.session.id, "state = ?", (REJECTED,)):
            self._check(r["name"])
        if self.req.retry_failed:  # asked for: these join one more batch (their `batches` count says so)
            self.ledger.db.execute("UPDATE session_movies SET state = ?, batch_id = NULL, message = '' "
                                   "WHERE session_id = ? AND state = ?", (SETTLED, self.session.id, FAILED))

    # ---- one pass ----------------------------------------------------------------------------------------------
    def step(self) -> dict[str, Any]:
        now = self.clock()
        self._detect(now)
        if self.store is not None:
            self._upload()
        self._batches(now)
        records.update_session(self.ledger.db, self.session.id, heartbeat_at=now, problems=self.problem_list())
        return self.numbers(now)

    def problem_list(self) -> list[str]:
        return [self.problems[k] for k in sorted(self.problems)]

    def numbers(self, now: float | None = None) -> dict[str, Any]:
        return session_numbers.numbers(self.ledger, self.session, now, self.growing, self.problem_list())

    def _problem(self, key: str, message: str | None) -> None:
        if message is None:
            self.problems.pop(key, None)
        else:
            self.problems[key] = message

    def _detect(self, now: float) -> None:
        found = self.detector.poll(now)
        self._problem("folder", f"the session folder {self.session_dir} is not there (an unmounted share?): "
                                "waiting for it; nothing is lost" if found.missing_folder else None)
        if found.missing_folder:
            return
        self.growing = len(found.growing)
        if found.growing or found.settled:
            self.last_activity = now
        for key in [k for k in self.problems if k.startswith("stuck:")]:
            self.problems.pop(key)
        for rel in found.stuck:
            self._problem(f"stuck:{rel}", f"{rel} is still being written after {self.s.stuck_seconds:g} s: it is "
                                          "not processed until it is complete (did the transfer stop?)")
        for seen in found.settled:
            records.add_movie(self.ledger.db, self.session.id, seen.rel, seen.size, seen.closed_at, now, SETTLED)
            self._check(seen.rel)

    def _check(self, rel: str) -> None:
        c = check_movie(self.session_dir / rel, self.s.pixel_size)
        if c.ok:
            records.update_movie(self.ledger.db, self.session.id, rel, state=SETTLED, message="")
        else:
            records.update_movie(self.ledger.db, self.session.id, rel, state=REJECTED,
                                 message=f"{c.problem} (hint: {c.hint})")

    # ---- the archive copy --------------------------------------------------------------------------------------
    def _upload(self) -> None:
        if self.uploading is not None:
            if not self.uploading.done():
                return
            try:
                done = self.uploading.result()
            except CryocloudError as e:
                self._problem("upload", f"upload failed: {e.message} (hint: {e.hint}); retried on the next round")
            except OSError as e:
                self._problem("upload", f"upload failed: {e}; retried on the next round")
            else:
                self._problem("upload", None)
                self._record(done)
            self.uploading = None
        names = [r[0] for r in self.ledger.db.execute(
            "SELECT name FROM session_movies WHERE session_id = ? AND state != ? AND uploaded_at IS NULL "
            "ORDER BY closed_at, name LIMIT ?", (self.session.id, REJECTED, UPLOAD_ROUND))]
        if names:
            assert self.store is not None
            name = manifest_name(self.session.id, self.session_dir, int(self.clock() * 1000))  # unique per round
            self.uploading = self.pool.submit(upload, self.store, self.session_dir, names, name)

    def _record(self, done: Round) -> None:
        now = self.clock()
        for m in done.movies:
            self.ledger.db.execute(
                "UPDATE session_movies SET sha256 = ?, object_key = ?, uploads = uploads + 1, uploaded_at = ?, "
                "verified_at = ? WHERE session_id = ? AND name = ?",
                (m.sha256, m.key, now, now if m.verified else None, self.session.id, m.name))
            if m.verified:
                self.problems.pop(f"verify:{m.name}", None)
                continue
            self._problem(f"verify:{m.name}", f"{m.name}: its object did not verify in the store; it is uploaded "
                                              "again on the next round")
            self.ledger.db.execute("UPDATE session_movies SET uploaded_at = NULL WHERE session_id = ? AND name = ?",
                                   (self.session.id, m.name))

    def uploads_pending(self) -> bool:
        if self.store is None:
            return False
        if self.uploading is not None:
            return True
        row = self.ledger.db.execute("SELECT count(*) FROM session_movies WHERE session_id = ? AND state != ? AND "
                                     "uploaded_at IS NULL", (self.session.id, REJECTED)).fetchone()
        return bool(row[0])

    # ---- batches -----------------------------------------------------------------------------------------------
    def _gain_missing(self) -> bool:
        if not self.s.gain_ref:
            return False
        gain = Path(self.s.gain_ref)
        missing = not (gain if gain.is_absolute() else self.project / gain).is_file()
        self._problem("gain", f"the gain reference {self.s.gain_ref} is missing: processing waits (uploads go on); "
                              "put it there or fix gain_ref in the session settings" if missing else None)
        return missing

    def _batches(self, now: float, draining: bool = False) -> None:
        if self.run is not None:
            if self.run.finished():
                self._finish()
            elif self.run.pid != self.recorded_pid and self.batch is not None:  # the chain's next pipeliner
                self.recorded_pid = self.run.pid
                records.update_batch(self.ledger.db, self.batch, pipeliner_pid=self.run.pid,
                                     pipeliner_started=process_start_time(self.run.pid))
            return
        if self.problems.get("folder") or self._gain_missing():
            return
        left = next((b for b in records.batches(self.ledger.db, self.session.id) if b["state"] == records.RUNNING),
                    None)
        if left is not None:  # a batch a previous watcher left running
            if left["pipeliner_pid"] and pid_alive(left["pipeliner_pid"], left["pipeliner_started"]):
                return  # its pipeliner still runs: RELION finishes it; we run it again once it has ended
            if self._jobs_active():
                return
            self._launch(left["id"], records.batch_movies(self.ledger.db, self.session.id, left["id"]), left["split"])
            return
        waiting = records.movies(self.ledger.db, self.session.id, "state = ? AND batch_id IS NULL", (SETTLED,))
        oldest = now - min((r["settled_at"] for r in waiting), default=now)
        decision = batching.decide(len(waiting), oldest, False, self.s, draining)
        if decision is None:
            return
        batch, names = records.new_batch(self.ledger.db, self.session.id, decision.size, decision.split)
        self._launch(batch, names, decision.split)

    def _jobs_active(self) -> bool:
        return any(j.active for job_dir in self.jobs.values()
                   for j in self.ledger.jobs_in_dir(str(self.project), job_dir))

    def _link(self, names: list[str]) -> bool:
        """Link a batch's movies into the folder Import reads (idempotent); False (and a problem shown) on failure."""
        folder = self.project / self.link_dir
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for rel in names:
                link = folder / link_name(rel)
                if not link.is_symlink():
                    link.symlink_to(self.session_dir / rel)
        except OSError as e:
            hint = "free space on the project's disk" if e.errno == errno.ENOSPC else "check the project's folder"
            self._problem("links", f"cannot link movies into {folder}: {e.strerror} ({hint}); retrying")
            return False
        self._problem("links", None)
        return True

    def _launch(self, batch: int, names: list[str], split: int) -> None:
        if not self._link(names):
            return
        per_micrograph = [self.jobs[k] for k in ("MotionCorr", "CtfFind") if k in self.jobs]
        if not all([relion.set_split(self.project, job, split) for job in per_micrograph]):
            split = 1  # a job added before the queue had 'Split over N workers'
        try:
            self.run = relion.run_jobs(self.project, [self.jobs[k] for k in relion.KINDS if k in self.jobs], self.env)
        except (CryocloudError, OSError) as e:
            self._problem("relion", f"cannot start RELION's pipeliner: {e}")
            return
        self._problem("relion", None)
        self.batch = batch
        self.recorded_pid = self.run.pid
        records.update_batch(self.ledger.db, batch, started_at=self.clock(), split=split,
                             pipeliner_pid=self.run.pid, pipeliner_started=process_start_time(self.run.pid))

    def _finish(self) -> None:
        assert self.run is not None and self.batch is not None
        run, batch = self.run, self.batch
        self.run, self.batch = None, None
        run.close()
        states = relion.process_status(self.project)
        failed = [j for j in run.jobs if states.get(j) != "succeeded"]
        names = records.batch_movies(self.ledger.db, self.session.id, batch)
        links = {f"{self.link_dir}/{link_name(n)}": n for n in names}
        made = relion.results(self.project, self.jobs, list(links))
        for link, rel in links.items():
            m = made.get(link)
            if m is not None:
                try:
                    at = os.stat(self.project / m.micrograph).st_mtime
                except OSError:
                    at = self.clock()
                records.update_movie(self.ledger.db, self.session.id, rel, state=CORRECTED, corrected_at=at,
                                     drift=m.drift, ctf_resolution=m.ctf_resolution)
            else:
                records.update_movie(self.ledger.db, self.session.id, rel, state=FAILED,
                                     message=f"RELION made no micrograph of it: see {self.jobs['MotionCorr']}run.err")
                (self.project / link).unlink(missing_ok=True)  # later batches' Import must not list it again
        started = next(b["started_at"] for b in records.batches(self.ledger.db, self.session.id) if b["id"] == batch)
        ids = sorted(j.id for job_dir in self.jobs.values()  # Import too: RELION queues it when told to
                     for j in self.ledger.jobs_in_dir(str(self.project), job_dir)
                     if j.submitted_at >= (started or 0) - 1)
        said = ", ".join(f"{j} {states.get(j, '?')}" for j in failed)
        message = f"RELION says {said}" if failed else ""
        records.update_batch(self.ledger.db, batch, state=records.DONE if not failed else FAILED,
                             ended_at=self.clock(), job_ids=ids, message=message)
        self.last_activity = self.clock()

    # ---- the loop ----------------------------------------------------------------------------------------------
    def busy(self) -> bool:
        return self.run is not None or self.uploads_pending() or self.growing > 0 or any(
            b["state"] == records.RUNNING for b in records.batches(self.ledger.db, self.session.id))

    def idle_for(self, now: float) -> float:
        return 0.0 if self.busy() else now - self.last_activity

    def loop(self, render: Callable[[dict[str, Any]], None], stop: threading.Event | None = None) -> dict[str, Any]:
        """Pass after pass until `stop` is set or, with --until-idle, nothing happened for that long."""
        stop = stop or threading.Event()
        self.prepare()
        try:
            while True:
                numbers = self.step()
                render(numbers)
                now = self.clock()
                until = self.req.until_idle
                if until is not None and not self.busy():
                    waiting = numbers["waiting"]
                    if waiting and now - self.last_activity >= min(until, self.s.max_wait_seconds):
                        self._batches(now, draining=True)  # nothing more arrives: what waits goes now
                        continue
                    if not waiting and self.idle_for(now) >= until:
                        return numbers
                if stop.wait(self.s.poll_seconds):
                    return self.numbers()
        finally:
            self.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True)  # an upload under way finishes and is recorded: never one left half-known
        if self.uploading is not None:
            # not recorded on an error: the next watcher uploads those movies again (by content: no bytes twice)
            with contextlib.suppress(CryocloudError, OSError):
                self._record(self.uploading.result())
        if self.run is not None:
            self.run.close()  # RELION's run goes on; the next watcher picks the batch up
        records.update_session(self.ledger.db, self.session.id, watcher_pid=None)
        self.ledger.close()


def status(settings: Settings, session_dir: Path, project: Path | None = None) -> dict[str, Any]:
    """`watch --status`: the session's numbers and every movie with its archive copy, from the ledger alone."""
    ledger = Ledger(settings.ledger_path)
    try:
        session = records.find_session(ledger.db, str(session_dir.resolve()),
                                       str(project.resolve()) if project else None)
        if session is None:
            raise CryocloudError(f"no watched session for {session_dir}",
                                 "start one with `cryocloud watch SESSION_DIR --project PROJECT`")
        out = session_numbers.numbers(ledger, session)
        out["movies"] = session_numbers.movie_list(ledger, session)
        return out
    finally:
        ledger.close()
