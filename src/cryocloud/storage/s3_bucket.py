"""The bucket-level calls of an S3 store, through boto3 (obstore does not make them): storage classes, lifecycle
rules (the tiers of storage/tiers.py) and object tags. Mixed into `s3.S3Store`, whose boto3 client they use."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any, NoReturn

from cryocloud.errors import CryocloudError
from cryocloud.storage.base import ObjectInfo, ObjectNotFound, scope

TIER_CLASSES = {"glacier_ir": "GLACIER_IR", "glacier": "GLACIER", "deep_archive": "DEEP_ARCHIVE", "ia": "STANDARD_IA"}


class BucketCalls:
    """What these calls need of the store they are mixed into."""

    bucket: str
    prefix: str
    url: str
    endpoint_url: str
    _client: Any

    def _key(self, key: str) -> str:
        raise NotImplementedError

    def _raise(self, e: BaseException, what: str, key: str = "") -> NoReturn:
        raise NotImplementedError

    # --- bucket-level: storage classes and lifecycle (boto3) --------------------------------------------
    def list_classes(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Like `list`, with each object's storage class (obstore does not report it)."""
        import botocore.exceptions as be

        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
        cut = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    yield ObjectInfo(
                        obj["Key"][cut:], int(obj["Size"]), obj["LastModified"].timestamp(),
                        str(obj.get("StorageClass", "STANDARD")),
                    )
        except be.ClientError as e:
            self._raise(e, "listing of", prefix)

    def _rules(self) -> builtins.list[dict[str, Any]]:
        import botocore.exceptions as be

        try:
            return list(self._client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"])
        except be.ClientError as e:
            if "NoSuchLifecycleConfiguration" in str(e) or "NotImplemented" in str(e):
                return []
            self._raise(e, "reading lifecycle of", self.bucket)

    def get_lifecycle(self) -> dict[str, dict[str, int]]:
        """cryocloud's rules under this store's prefix, keyed by `base.scope` (prefix relative to the store)."""
        out: dict[str, dict[str, int]] = {}
        back = {v: k for k, v in TIER_CLASSES.items()}
        cut = len(self.prefix) + 1 if self.prefix else 0
        for rule in self._rules():
            full, tags = _filter_of(rule)
            if self.prefix and not full.startswith(self.prefix + "/"):
                continue
            entry = out.setdefault(scope(full[cut:], tags), {})
            for t in rule.get("Transitions", []):
                entry[back.get(str(t.get("StorageClass")), str(t.get("StorageClass")))] = int(t.get("Days", 0))
            if "Expiration" in rule and "Days" in rule["Expiration"]:
                entry["expire"] = int(rule["Expiration"]["Days"])
        return out

    def set_lifecycle(self, prefix: str, rules: dict[str, int], tags: dict[str, str] | None = None) -> None:
        """Replace the lifecycle rule for `prefix` (relative to the store) and `tags` (all must match):
        {tier: days, 'expire': days}; {} removes it. Other rules in the bucket (other prefixes, other
        tools' rules) are kept as they are."""
        import botocore.exceptions as be

        full = self._key(prefix)
        want = scope(full, tags)
        body = [r for r in self._rules() if scope(*_filter_of(r)) != want]
        if rules:
            body.append(_rule(full, rules, tags or {}))
        try:
            if body:
                self._client.put_bucket_lifecycle_configuration(
                    Bucket=self.bucket, LifecycleConfiguration={"Rules": body}  # type: ignore[typeddict-item]
                )
            else:
                self._client.delete_bucket_lifecycle(Bucket=self.bucket)
        except be.ClientError as e:
            if "NotImplemented" in str(e):
                raise CryocloudError(
                    f"the server at {self.endpoint_url or 'AWS'} does not implement lifecycle rules",
                    "tiers need AWS S3 (or a server with lifecycle support)",
                ) from None
            self._raise(e, "setting lifecycle of", self.bucket)

    # --- object tags (boto3: obstore sends tags with a PUT but cannot read or change them) ---------------
    def get_tags(self, key: str) -> dict[str, str]:
        import botocore.exceptions as be

        try:
            got = self._client.get_object_tagging(Bucket=self.bucket, Key=self._key(key))
        except be.ClientError as e:
            if "NoSuchKey" in str(e) or "404" in str(e):
                raise ObjectNotFound(f"no object {key} in {self.url}", "push it first, or check the name") from None
            self._raise(e, "reading tags of", key)
        return {str(t["Key"]): str(t["Value"]) for t in got.get("TagSet", [])}

    def set_tags(self, key: str, tags: dict[str, str]) -> None:
        """Replace the object's whole tag set (S3 has no per-tag update)."""
        import botocore.exceptions as be

        try:
            self._client.put_object_tagging(
                Bucket=self.bucket, Key=self._key(key),
                Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]},
            )
        except be.ClientError as e:
            if "NoSuchKey" in str(e):
                raise ObjectNotFound(f"no object {key} in {self.url}", "push it first, or check the name") from None
            self._raise(e, "tagging", key)


def _filter_of(rule: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(prefix, tags) a rule applies to, whatever form its filter takes."""
    f = rule.get("Filter", {})
    tags: dict[str, str] = {}
    if "And" in f:
        prefix = str(f["And"].get("Prefix", ""))
        tags = {str(t["Key"]): str(t["Value"]) for t in f["And"].get("Tags", [])}
    else:
        prefix = str(f.get("Prefix", rule.get("Prefix", "")))
        if "Tag" in f:
            tags = {str(f["Tag"]["Key"]): str(f["Tag"]["Value"])}
    return prefix, tags


def _rule(prefix: str, rules: dict[str, int], tags: dict[str, str]) -> dict[str, Any]:
    rule: dict[str, Any] = {"ID": f"cryocloud:{scope(prefix, tags) or 'all'}"[:255], "Status": "Enabled"}
    if tags:
        rule["Filter"] = {"And": {"Prefix": prefix, "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}}
    else:
        rule["Filter"] = {"Prefix": prefix}
    transitions = [
        {"Days": days, "StorageClass": TIER_CLASSES[tier]} for tier, days in rules.items() if tier in TIER_CLASSES
    ]
    if transitions:
        rule["Transitions"] = transitions
    if "expire" in rules:
        rule["Expiration"] = {"Days": rules["expire"]}
    return rule
