"""`cryocloud storage ...` and `cryocloud project ...`: parse, call storage/, render (`cleanup`: instances_cmds.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from cryocloud.errors import CryocloudError

STORE_HELP = "Store URL: s3://BUCKET/PREFIX or a folder (default: [storage] url, else $CRYOCLOUD_HOME/store)."


def _store(url: str) -> Any:
    from cryocloud.settings import load_settings
    from cryocloud.storage.stores import open_store

    return open_store(url, load_settings())  # the config's [storage] endpoint_url and ca_bundle apply to --to/--from


def _run(coro: Any) -> Any:
    from cryocloud.storage.transfer import run

    return run(coro)


def _progress(quiet: bool) -> Any:
    from cryocloud.storage.progress import make_progress

    return make_progress(quiet)


def _gb(n: int) -> str:
    return f"{n / 1e9:.3f} GB" if n >= 1e7 else f"{n / 1e6:.2f} MB"


@click.group()
def storage() -> None:
    """Move data to and from object storage (content-addressed, verified, resumable)."""


@storage.command()
@click.argument("local", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--to", "url", default="", help=STORE_HELP)
@click.option("--name", default="", help="Manifest name (default: the folder's name).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; one summary line.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def push(local: Path, paths: tuple[Path, ...], url: str, name: str, quiet: bool, as_json: bool) -> None:
    """Upload folder LOCAL (or PATHS inside it); unchanged files cost nothing."""
    from cryocloud.storage.push import push_async

    store = _store(url)
    t0 = time.monotonic()
    r = _run(push_async(store, local, [Path(p) for p in paths] or None, name=name or local.resolve().name,
                        progress=_progress(quiet or as_json)))
    secs = time.monotonic() - t0
    row = {"manifest": r.manifest.name, "store": store.url, "files": r.files, "bytes": r.bytes_total,
           "uploaded_objects": r.uploaded_objects, "uploaded_bytes": r.uploaded_bytes,
           "manifest_written": r.manifest_written, "seconds": round(secs, 3)}
    if as_json:
        click.echo(json.dumps(row))
        return
    click.echo(f"pushed {r.files} files ({_gb(r.bytes_total)}) as {r.manifest.name!r} to {store.url}: "
               f"{r.uploaded_objects} objects / {_gb(r.uploaded_bytes)} uploaded in {secs:.1f} s"
               + ("" if r.manifest_written else " (unchanged)"))


@storage.command()
@click.argument("name")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--from", "url", default="", help=STORE_HELP)
@click.option("--only", multiple=True, help="Restore only this path or folder (repeatable).")
@click.option("--quiet", "-q", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def pull(name: str, dest: Path, url: str, only: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Restore manifest NAME under DEST, verified; files already there are skipped."""
    from cryocloud.storage.pull import pull_async

    store = _store(url)
    t0 = time.monotonic()
    r = _run(pull_async(store, name, dest, only=list(only) or None, progress=_progress(quiet or as_json)))
    secs = time.monotonic() - t0
    if as_json:
        click.echo(json.dumps({"manifest": name, "files": r.files, "bytes": r.bytes_total,
                               "downloaded_files": r.downloaded_files, "downloaded_bytes": r.downloaded_bytes,
                               "seconds": round(secs, 3)}))
        return
    click.echo(f"restored {r.files} files ({_gb(r.bytes_total)}) into {dest}: {r.downloaded_files} files / "
               f"{_gb(r.downloaded_bytes)} downloaded and verified in {secs:.1f} s")


@storage.command()
@click.argument("name")
@click.option("--from", "url", default="", help=STORE_HELP)
@click.option("--full", is_flag=True,
              help="Download and hash every object (default: a HEAD each: there, right size, and on S3 the "
                   "stored SHA-256 of objects put in one request).")
@click.option("--repair", "source", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              metavar="FOLDER", help="Store damaged or missing objects again from this good copy (their files are "
                                     "hashed first), under the same keys, then check them again.")
@click.option("--quiet", "-q", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
def verify(name: str, url: str, full: bool, source: Path | None, quiet: bool, as_json: bool) -> None:
    """Check that manifest NAME's objects are whole in the store; exit 1 if any is damaged or missing.

    What it finds is remembered: the next `storage push` of a good copy uploads those objects again, or
    `--repair FOLDER` stores them again now from a good copy (the project folder they were pushed from).

    \b
    cryocloud storage verify jobs/Class3D-job012-in            # quick: HEADs (and stored checksums on S3)
    cryocloud storage verify jobs/Class3D-job012-in --full     # download and hash everything
    cryocloud storage verify snap/2026-11 --full --repair ~/projects/ribosome
    """
    from cryocloud.storage.pull import load_manifest
    from cryocloud.storage.repair import repair_async
    from cryocloud.storage.verify import verify_async

    store = _store(url)
    r = _run(verify_async(store, name, full=full, progress=_progress(quiet or as_json)))
    fixed = None
    if not r.ok and source is not None:
        bad = set(r.damaged) | set(r.missing)
        fixed = _run(repair_async(store, _run(load_manifest(store, name)), bad, source))
        before, r = r, _run(verify_async(store, name, full=full, progress=_progress(True)))
    if as_json:
        out = {"manifest": name, "objects": r.objects, "full": r.full, "ok": r.ok, "bytes_checked": r.bytes_checked,
               "by_checksum": r.by_checksum, "damaged": r.damaged, "missing": r.missing}
        if fixed is not None:
            out["repaired"], out["not_repaired"] = fixed.repaired, fixed.left
        click.echo(json.dumps(out))
    else:
        if fixed is not None:
            click.echo(f"{name}: {len(before.damaged)} damaged and {len(before.missing)} missing of "
                       f"{before.objects} objects; {len(fixed.repaired)} stored again from {source}")
            for key, why in sorted(fixed.left.items()):
                click.echo(f"  not repaired {key}: {why}")
        if full:
            how = f"downloaded and hashed ({_gb(r.bytes_checked)})"
        elif r.by_checksum:
            how = (f"there with the right size, {r.by_checksum} matching their stored SHA-256 (--full hashes "
                   "every one)")
        else:
            how = "there with the right size (--full hashes them)"
        click.echo(f"{name}: {r.objects} objects {how}" if r.ok else
                   f"{name}: {len(r.damaged)} damaged and {len(r.missing)} missing of {r.objects} objects")
        for what, found in (("damaged", r.damaged), ("missing", r.missing)):
            for key, files in sorted(found.items()):
                click.echo(f"  {what} {key}: {', '.join(files[:5])}{', ...' if len(files) > 5 else ''}")
        if not r.ok:
            click.echo("hint: store them again from a good copy: cryocloud storage verify NAME --repair FOLDER, or "
                       "push the folder again (cryocloud storage push)", err=True)
    if not r.ok:
        raise click.exceptions.Exit(1)


@storage.command(name="ls")
@click.argument("prefix", default="")
@click.option("--store", "url", default="", help=STORE_HELP)
def ls_cmd(prefix: str, url: str) -> None:
    """List manifests (pushes) in the store, optionally under PREFIX."""
    from rich.console import Console
    from rich.table import Table

    from cryocloud.storage.catalog import manifests
    from cryocloud.storage.pull import load_manifest

    store = _store(url)
    found = _run(manifests(store, prefix))
    table = Table("manifest", "files", "size", "pushed")
    for m in found:
        man = _run(load_manifest(store, m.name))
        table.add_row(m.name, str(len(man.files)), _gb(man.total_bytes),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(man.created)))
    Console().print(table)


@storage.command()
@click.option("--store", "url", default="", help=STORE_HELP)
def du(url: str) -> None:
    """Bytes stored, by kind and storage tier, with what they cost per month."""
    from rich.console import Console
    from rich.table import Table

    from cryocloud.storage.catalog import monthly_usd, usage

    store = _store(url)
    rows = _run(usage(store))
    table = Table("kind", "tier", "objects", "size", "USD/month", title=store.url)
    total, cost = 0, 0.0
    for (kind, tier), (n, size) in rows.items():
        usd = monthly_usd(size, tier)
        total, cost = total + size, cost + usd
        table.add_row(kind, tier, str(n), _gb(size), f"{usd:.4f}")
    table.add_row("total", "", "", _gb(total), f"{cost:.4f}")
    Console().print(table)


@storage.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--store", "url", default="", help=STORE_HELP)
@click.option("--yes", is_flag=True, help="Really delete (default: show what would go).")
def rm(names: tuple[str, ...], url: str, yes: bool) -> None:
    """Remove manifests NAMES and every object no other manifest uses (dry run unless --yes)."""
    from cryocloud.storage.catalog import collect

    _print_sweep(_run(collect(_store(url), list(names), dry_run=not yes)), dry_run=not yes)


@storage.command()
@click.option("--store", "url", default="", help=STORE_HELP)
@click.option("--after", "days", type=click.IntRange(0), default=None, help="Days before moving to --tier.")
@click.option("--tier", type=click.Choice(["ia", "glacier_ir", "glacier", "deep_archive"]), default="glacier")
@click.option("--off", is_flag=True, help="Remove cryocloud's tiering rule.")
def tier(url: str, days: int | None, tier: str, off: bool) -> None:
    """Show or set the lifecycle rule that moves file and pack objects to a colder tier after N days."""
    from cryocloud.storage.catalog import PRICE_GB_MONTH
    from cryocloud.storage.s3_bucket import TIER_CLASSES

    store = _store(url)
    if off:
        store.set_lifecycle("cas/", {})
    elif days is not None:
        store.set_lifecycle("cas/", {tier: days})
    rules = store.get_lifecycle()
    if not rules:
        click.echo(f"{store.url}: no tiering rule; everything stays STANDARD "
                   f"({PRICE_GB_MONTH['STANDARD']} USD/GB-month)")
    for prefix, rule in rules.items():
        for t, d in rule.items():
            cls = TIER_CLASSES.get(t, t)
            click.echo(f"{store.url}/{prefix}: {cls} after {d} days ({PRICE_GB_MONTH.get(cls, 0)} USD/GB-month)")


def _print_sweep(sweep: Any, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for name in sweep.manifests:
        click.echo(f"{verb} manifest {name}")
    click.echo(f"{verb} {len(sweep.objects)} unreferenced objects, {_gb(sweep.bytes)}, "
               f"saving {sweep.monthly_usd:.4f} USD/month, {sweep.monthly_usd / (730 / 24):.4f} USD/day (objects younger than 24 h are kept)" + ("  (dry run: add --yes to delete)" if dry_run else ""))


# --- project backup --------------------------------------------------------------------------------------
@click.group()
def project() -> None:
    """Back up a whole RELION project to object storage and restore it elsewhere."""


@project.command(name="push")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@click.option("--name", default="", help="Project name (default: the folder's name).")
@click.option("--to", "url", default="", help=STORE_HELP)
@click.option("--quiet", "-q", is_flag=True)
def project_push(folder: Path, name: str, url: str, quiet: bool) -> None:
    """Snapshot FOLDER (default: here) as a new version of the project; links stay links."""
    from cryocloud.storage.project import push_project

    r = push_project(_store(url), folder, name or folder.resolve().name, progress=_progress(quiet))
    click.echo(f"project snapshot {r.manifest.name}: {r.files} files ({_gb(r.bytes_total)}), "
               f"{_gb(r.uploaded_bytes)} uploaded")


@project.command(name="pull")
@click.argument("name")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--version", "version", default="", help="Snapshot to restore (default: the latest).")
@click.option("--from", "url", default="", help=STORE_HELP)
@click.option("--quiet", "-q", is_flag=True)
def project_pull(name: str, folder: Path, version: str, url: str, quiet: bool) -> None:
    """Bring FOLDER up to date with project NAME's latest (or given) snapshot."""
    from cryocloud.storage.project import pull_project

    snap, r = pull_project(_store(url), name, folder, version, progress=_progress(quiet))
    click.echo(f"{folder}: {snap}: {r.downloaded_files} of {r.files} files downloaded ({_gb(r.downloaded_bytes)})")


@project.command(name="clone")
@click.argument("name")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--version", "version", default="")
@click.option("--from", "url", default="", help=STORE_HELP)
@click.option("--quiet", "-q", is_flag=True)
def project_clone(name: str, folder: Path, version: str, url: str, quiet: bool) -> None:
    """Restore project NAME into a new FOLDER."""
    from cryocloud.storage.project import pull_project

    if folder.exists() and any(folder.iterdir()):
        raise CryocloudError(f"{folder} exists and is not empty", "clone into a new folder, or use project pull")
    snap, r = pull_project(_store(url), name, folder, version, progress=_progress(quiet))
    click.echo(f"cloned {snap} into {folder}: {r.files} files ({_gb(r.bytes_total)})")


@project.command(name="ls")
@click.argument("name", default="")
@click.option("--store", "url", default="", help=STORE_HELP)
def project_ls(name: str, url: str) -> None:
    """List projects, or the snapshots of project NAME."""
    from cryocloud.storage.project import list_projects

    for proj, snaps in list_projects(_store(url), name).items():
        if name:
            for s in snaps:
                click.echo(f"{proj}  {s}")
        else:
            click.echo(f"{proj}  {len(snaps)} snapshots, latest {snaps[-1] if snaps else '-'}")


@project.command(name="tier")
@click.argument("name", default="")
@click.option("--after", "days", type=click.IntRange(0), default=None, help="Days after upload before moving.")
@click.option("--to", "tier", type=click.Choice(["ia", "glacier_ir", "glacier", "deep_archive"]), default="glacier",
              show_default=True, help="Storage class to move to.")
@click.option("--off", is_flag=True, help="Remove project NAME's rule.")
@click.option("--store", "url", default="", help=STORE_HELP)
@click.option("--yes", is_flag=True, help="Apply: write the rule and re-tag objects (default: a dry run).")
def project_tier(name: str, days: int | None, tier: str, off: bool, url: str, yes: bool) -> None:
    """Show, or set, project NAME's storage tier: its files and packs move to --to after --after days.

    Objects shared with job staging data, plain pushes or projects without a rule stay STANDARD; objects
    shared with other projects follow the most available of their rules. A dry run unless --yes; --yes with
    no rule change re-tags objects after new pushes."""
    from cryocloud.app.tiers import apply, propose
    from cryocloud.storage import tiers
    from cryocloud.storage.s3_bucket import TIER_CLASSES

    if (days is not None or off) and not name:
        raise click.UsageError("name the project: cryocloud project tier NAME --after DAYS --to CLASS")
    if days is not None and off:
        raise click.UsageError("--after and --off contradict each other")
    if days is not None and tier == "ia" and days < 30:
        raise click.UsageError("S3 moves objects to STANDARD_IA no sooner than 30 days after upload")
    store = _store(url)
    change = propose(store, name, days, TIER_CLASSES[tier], off)
    shown = {name: change.rows.get(name, tiers.ProjectTier(name, change.proposed.get(name)))} if name else change.rows
    verb = "would move" if not yes and change.changes_rules else "moves"
    for row in shown.values():
        _print_tier(row, verb)
    if not shown:
        click.echo(f"{store.url}: no project snapshots")
    if not yes:
        if change.changes_rules or any(p.rule for p in change.places):
            click.echo("(dry run: add --yes to write the rule and tag the objects it moves)")
        return
    changed = apply(store, name, change)
    click.echo(f"{store.url}: lifecycle rule {'removed' if off else 'written'}; {changed} objects re-tagged"
               if change.changes_rules else f"{store.url}: {changed} objects re-tagged")


def _print_tier(row: Any, verb: str) -> None:
    from cryocloud.storage.catalog import PRICE_GB_MONTH
    from cryocloud.storage.tiers import MIN_DAYS

    if row.rule is None:
        held = sum(p.size for p in row.held)
        click.echo(f"{row.project}: no tier rule; {len(row.held)} objects ({_gb(held)}) stay STANDARD")
        return
    r = row.rule
    click.echo(f"{row.project}: {verb} {len(row.moves)} objects ({_gb(row.bytes)}) to {r.storage_class} "
               f"{r.days} days after upload: saves {row.saving_usd_month:.4f} USD/month "
               f"({PRICE_GB_MONTH[r.storage_class]} instead of {PRICE_GB_MONTH['STANDARD']} USD/GB-month; "
               f"one-time transition fee {row.transition_usd:.4f} USD; billed at least {MIN_DAYS[r.storage_class]} "
               "days once moved)")
    if row.elsewhere:
        others = sorted({p.rule.project for p in row.elsewhere if p.rule})
        click.echo(f"  {len(row.elsewhere)} shared objects ({_gb(sum(p.size for p in row.elsewhere))}) follow the "
                   f"more available rule of {', '.join(others)}")
    if row.held:
        why = sorted({h for p in row.held for h in p.holders if h != row.project})
        click.echo(f"  {len(row.held)} shared objects ({_gb(sum(p.size for p in row.held))}) stay STANDARD: "
                   f"also used by {', '.join(why)}")
