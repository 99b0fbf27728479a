"""Find the files, links and empty folders a push covers, relative to a root folder.

Two ways to treat a symlink:
- `keep_links=True` (project backup): every symlink is recorded as a link, its target never followed, so
  RELION's job aliases and `Movies/` links to raw data stay links and their targets are not copied twice.
- `keep_links=False` (staging a job for a node without the lab's disk): a link whose target is inside the
  root and also staged stays a link; any other link is followed and its bytes are stored under the link's
  path (by content, so bytes reached by two paths are uploaded once).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryocloud.errors import CryocloudError
from cryocloud.storage.manifest import LinkEntry

SKIP_NAMES = {".cryocloud-part"}  # our own partial downloads


@dataclass(frozen=True)
class LocalFile:
    rel: str
    path: str  # absolute path to read (through links)
    size: int
    mtime_ns: int
    ino: int
    mode: int


@dataclass
class Scan:
    files: list[LocalFile]
    links: list[LinkEntry]
    dirs: list[str]


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def scan(root: Path, paths: list[Path] | None = None, *, keep_links: bool = True,
         exclude: frozenset[str] = frozenset()) -> Scan:
    """Walk `paths` (default: all of `root`); every path must be inside `root`."""
    root = root.resolve()
    if not root.is_dir():
        raise CryocloudError(f"{root} is not a folder", "give the folder to push")
    starts = []
    for p in paths or [root]:
        full = (root / p) if not p.is_absolute() else p
        absolute = Path(os.path.abspath(full))
        if absolute != root and root not in absolute.parents:
            raise CryocloudError(f"{p} is outside {root}", "give paths inside the folder being pushed")
        if not os.path.lexists(absolute):
            raise CryocloudError(f"{p} does not exist", f"check the path (relative to {root})")
        starts.append(absolute)
    out = Scan([], [], [])
    pending_links: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for start in starts:
        _walk(root, start, keep_links, exclude, out, pending_links, seen)
    if not keep_links:
        staged = {f.rel for f in out.files} | set(out.dirs) | {x.path for x in out.links}
        for link, target in pending_links:
            resolved = Path(os.path.realpath(link))
            inside = resolved == root or root in resolved.parents
            if inside and (_rel(root, resolved) in staged or any(
                s.startswith(_rel(root, resolved) + "/") for s in staged)):
                out.links.append(LinkEntry(_rel(root, link), target))
            else:
                _follow(root, link, out, seen)
    return out


def _walk(root: Path, start: Path, keep_links: bool, exclude: frozenset[str], out: Scan,
          pending: list[tuple[Path, str]], seen: set[str]) -> None:
    if os.path.islink(start) and start != root:
        _link(root, start, keep_links, out, pending, seen)
        return
    if start.is_file():
        _add(root, start, out, seen)
        return
    for dirpath, dirnames, filenames in os.walk(start):
        d = Path(dirpath)
        dirnames[:] = [n for n in dirnames if n not in exclude]
        if not dirnames and not filenames and d != root:
            out.dirs.append(_rel(root, d))
        for name in dirnames:
            if os.path.islink(d / name):
                _link(root, d / name, keep_links, out, pending, seen)
        for name in filenames:
            if name in exclude or name.endswith(".cryocloud-part"):
                continue
            p = d / name
            if os.path.islink(p):
                _link(root, p, keep_links, out, pending, seen)
            else:
                _add(root, p, out, seen)


def _link(root: Path, p: Path, keep_links: bool, out: Scan, pending: list[tuple[Path, str]], seen: set[str]) -> None:
    target = os.readlink(p)
    if keep_links:
        rel = _rel(root, p)
        if rel not in seen:
            seen.add(rel)
            out.links.append(LinkEntry(rel, target))
    else:
        pending.append((p, target))


def _follow(root: Path, link: Path, out: Scan, seen: set[str]) -> None:
    """Store what `link` points at under the link's own path."""
    if not os.path.exists(link):
        raise CryocloudError(f"{_rel(root, link)} is a broken link", "fix or remove the link, then push again")
    if os.path.isfile(link):
        _add(root, link, out, seen)
        return
    for dirpath, _dirs, filenames in os.walk(link, followlinks=True):
        for name in filenames:
            _add(root, Path(dirpath) / name, out, seen)


def _add(root: Path, p: Path, out: Scan, seen: set[str]) -> None:
    rel = _rel(root, p)
    if rel in seen:
        return
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return  # vanished while walking
    if not stat.S_ISREG(st.st_mode):
        return
    seen.add(rel)
    out.files.append(LocalFile(rel, str(p), st.st_size, st.st_mtime_ns, st.st_ino, stat.S_IMODE(st.st_mode)))
