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


@dataclass(frozen=True, slots=True)  # one per file: a million of them in a big project
class LocalFile:
    rel: str
    size: int
    mtime_ns: int
    ino: int
    mode: int
    base: str = ""  # the root folder, one string shared by every file: the file is read at base/rel...
    through: str = ""  # ...or here, when it is reached through a link that was followed

    @property
    def path(self) -> str:
        """The absolute path to read (made when asked: a million stored paths would be ~100 MB)."""
        return self.through or f"{self.base}/{self.rel}"


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
    _walk_dir(root, str(start), _rel(root, start) if start != root else "", keep_links, exclude, out, pending, seen,
              str(root))


def _walk_dir(root: Path, folder: str, rel: str, keep_links: bool, exclude: frozenset[str], out: Scan,
              pending: list[tuple[Path, str]], seen: set[str], base: str) -> None:
    """One folder with os.scandir: the entry's type comes with the listing and one stat per file, with plain
    strings for paths (a million files: pathlib and a second lstat per file were two thirds of a scan)."""
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except FileNotFoundError:
        return  # vanished while walking
    empty = True
    for entry in entries:
        name = entry.name
        if name in exclude:
            continue
        empty = False
        sub = f"{rel}/{name}" if rel else name
        if entry.is_symlink():
            _link(root, Path(entry.path), keep_links, out, pending, seen)
        elif entry.is_dir(follow_symlinks=False):
            _walk_dir(root, entry.path, sub, keep_links, exclude, out, pending, seen, base)
        elif name.endswith(".cryocloud-part") or sub in seen:
            continue
        else:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                seen.add(sub)
                out.files.append(LocalFile(sub, st.st_size, st.st_mtime_ns, st.st_ino, stat.S_IMODE(st.st_mode),
                                           base))
    if empty and rel:
        out.dirs.append(rel)


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
    path = str(p)
    base = str(root)
    through = "" if path == f"{base}/{rel}" else path
    out.files.append(LocalFile(rel, st.st_size, st.st_mtime_ns, st.st_ino, stat.S_IMODE(st.st_mode), base, through))
