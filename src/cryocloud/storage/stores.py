"""Open a store by URL: the registry of kinds of store (s3://, file://, a plain path). Above base.py and the
stores themselves, so that neither imports the other."""

from __future__ import annotations

from pathlib import Path

from cryocloud.errors import CryocloudError, close_matches
from cryocloud.settings import Settings, StorageSection, load_settings
from cryocloud.storage.base import ObjectStore
from cryocloud.storage.localfs import LocalFolderStore


def _open_local(url: str, settings: Settings | None) -> ObjectStore:
    path = url.removeprefix("file://")
    return LocalFolderStore(Path(path).expanduser())


def _open_s3(url: str, settings: Settings | None) -> ObjectStore:
    from cryocloud.storage.s3 import S3Store  # boto3 and obstore load only for an S3 store

    section = settings.storage if settings else StorageSection()  # none on a node: the environment says it all
    return S3Store.from_url(url, endpoint_url=section.endpoint_url, region=section.region, ca_bundle=section.ca_bundle)


# scheme -> opener; a new kind of store adds one line here.
SCHEMES = {"s3": _open_s3, "file": _open_local}


def default_store_url(settings: Settings) -> str:
    return settings.storage.url or str(settings.home / "store")


def open_store(url: str = "", settings: Settings | None = None) -> ObjectStore:
    """Open the store at `url` (s3://bucket/prefix, file:///path or a plain path); empty: the configured one."""
    if not url:
        if settings is None:
            settings = load_settings()
        url = default_store_url(settings)
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme not in SCHEMES:
        raise CryocloudError(f"unknown storage URL scheme {scheme!r} in {url!r}", close_matches(scheme, set(SCHEMES)))
    return SCHEMES[scheme](url, settings)
