"""S3 and S3-compatible stores. Data moves through obstore (Rust: many requests in flight from one thread,
~4x a boto3 thread pool on small objects); bucket-level calls (lifecycle, storage classes) use boto3.

Credentials come only from boto3's chain (env, profile, instance role), handed to obstore in memory by
obstore's Boto3CredentialProvider; nothing is written anywhere. When the chain's first link answers (keys
and region in the environment) they are handed over directly and boto3 is imported only for bucket-level
calls, which saves ~0.2 s of start-up on every transfer. The endpoint is, first match wins: the
`endpoint_url` argument, `[storage] endpoint_url` in the config, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS.

HTTPS certificates are always verified. A facility's endpoint signed by its own CA is trusted through the CA's
PEM file: `[storage] ca_bundle` or AWS_CA_BUNDLE (as boto3 and aws-cli read it), added to the system's roots
for obstore and given to boto3 as `verify`.

An object put in one request (up to PART_SIZE: packs, small blobs, manifests) carries its SHA-256
(x-amz-checksum-sha256): the server checks the bytes it got against it and keeps it, and `storage verify` compares
it without downloading. Multipart uploads send none: a multipart checksum is composite (a hash of its parts'),
useless to `verify`, and hashing each part again cost ~10% of the upload rate here (BENCHMARKS.md).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

from cryocloud.errors import CryocloudError
from cryocloud.storage.base import STREAM_CHUNK, ObjectInfo, ObjectNotFound, joined
from cryocloud.storage.s3_bucket import BucketCalls

if TYPE_CHECKING:
    from obstore import GetOptions
    from obstore.store import ClientConfig, S3Config

PART_SIZE = 8 << 20  # multipart part size for large objects (chosen by benchmarks/storage/, BENCHMARKS.md)
PART_CONCURRENCY = 4  # parts in flight per object



def _endpoint(explicit: str) -> str:
    return explicit or os.environ.get("AWS_ENDPOINT_URL_S3", "") or os.environ.get("AWS_ENDPOINT_URL", "")


_DENIED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken", "InvalidToken"}
# transport failures as obstore/reqwest and botocore word them
_UNREACHABLE = ("error sending request", "connect", "dns error", "timed out", "broken pipe")
# a TLS certificate that does not verify, as rustls and OpenSSL word it
_UNTRUSTED = ("certificate", "unknownissuer", "badsignature", "notvalidforname", "self signed", "self-signed")


def _ca_pem(path: str) -> bytes:
    """The PEM certificates in `path` (a CA bundle), or a clear error."""
    try:
        pem = Path(path).expanduser().read_bytes()
    except OSError as e:
        raise CryocloudError(f"cannot read the CA bundle {path}: {e.strerror}",
                             "point AWS_CA_BUNDLE (or [storage] ca_bundle) at your endpoint's CA certificate, "
                             "a PEM file") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise CryocloudError(f"{path} holds no PEM certificate",
                             "give the CA certificate in PEM form (-----BEGIN CERTIFICATE-----); convert a DER "
                             "file with `openssl x509 -inform der -in ca.der -out ca.pem`")
    return pem


def _answer(e: BaseException) -> tuple[int, str, str]:
    """(HTTP status, S3 error code, message) when the server answered, else (0, "", "")."""
    import re

    response = getattr(e, "response", None)  # botocore's ClientError
    if isinstance(response, dict):
        error = response.get("Error", {})
        return (int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)), str(error.get("Code", "")),
                str(error.get("Message", "")))
    text = str(e)  # obstore: "... Server returned non-2xx status code: 500 Internal Server Error: <?xml ..."
    found = re.search(r"status code: (\d{3})", text)
    code = re.search(r"<Code>([^<]+)</Code>", text)
    message = re.search(r"<Message>([^<]+)</Message>", text)
    return (int(found.group(1)) if found else 0, code.group(1) if code else "", message.group(1) if message else "")


class S3Store(BucketCalls):
    keeps_checksums = "sha256"  # objects put in one request (<= single_part_max) keep their whole SHA-256
    single_part_max = PART_SIZE

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str = "", region: str = "",
                 ca_bundle: str = "") -> None:
        from obstore.store import S3Store as ObS3

        if not bucket:
            raise CryocloudError("storage URL has no bucket", "write it as s3://BUCKET or s3://BUCKET/PREFIX")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint_url = _endpoint(endpoint_url)
        self.ca_bundle = ca_bundle or os.environ.get("AWS_CA_BUNDLE", "")
        self._session: Any = None
        self._boto_client: Any = None
        config: dict[str, Any] = {}
        env_keys = _env_credentials()
        env_region = region or os.environ.get("AWS_REGION", "") or os.environ.get("AWS_DEFAULT_REGION", "")
        credential_provider: Any = None
        if env_keys and env_region:
            # boto3's chain looks at these variables first: same answer, without importing boto3 (~0.2 s of
            # start-up, most of a re-push of unchanged data)
            self.region = env_region
            config.update(env_keys)
        else:
            from obstore.auth.boto3 import Boto3CredentialProvider

            session = self._boto_session()
            self.region = region or session.region_name or "us-east-1"
            if session.get_credentials() is None:
                raise CryocloudError(
                    f"no AWS credentials found for {self.url}",
                    "configure them the usual AWS way (aws configure, AWS_PROFILE, or an instance role); "
                    "cryocloud never stores credentials itself",
                )
            credential_provider = Boto3CredentialProvider(session)
        config["region"] = self.region
        client_options: dict[str, Any] = {"connect_timeout": "5s", "timeout": "300s", "pool_max_idle_per_host": "128"}
        if self.endpoint_url:
            config["endpoint"] = config["aws_endpoint_url_s3"] = self.endpoint_url
            config["virtual_hosted_style_request"] = False
            client_options["allow_http"] = self.endpoint_url.startswith("http://")
        if self.ca_bundle:
            client_options["root_certificate"] = _ca_pem(self.ca_bundle)  # added to the system's roots

        def make(retries: int, timeout: float, checksum: bool = False) -> Any:
            return ObS3(
                bucket, prefix=self.prefix or None,
                config=cast("S3Config", {**config, "checksum_algorithm": "sha256"} if checksum else config),
                client_options=cast("ClientConfig", client_options),
                retry_config={"max_retries": retries, "retry_timeout": timedelta(seconds=timeout),
                              "backoff": {"init_backoff": timedelta(milliseconds=100),
                                          "max_backoff": timedelta(seconds=5), "base": 2}},
                credential_provider=credential_provider,
            )

        self._store = make(6, 120)  # multipart uploads: a checksum per part would be composite, and costs ~10%
        self._whole = make(6, 120, checksum=True)  # single-request uploads: the object's SHA-256 is kept
        self._probe = make(1, 10)  # for check(): an unreachable endpoint fails in seconds, not minutes

    def _boto_session(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session()
        return self._session

    @property
    def _client(self) -> Any:
        """boto3 client for bucket-level calls (lifecycle, storage classes), made on first use."""
        if self._boto_client is None:
            import botocore.config

            self._boto_client = self._boto_session().client(
                "s3", endpoint_url=self.endpoint_url or None, region_name=self.region,
                verify=self.ca_bundle or None,
                config=botocore.config.Config(
                    connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"},
                    s3={"addressing_style": "path"} if self.endpoint_url else None,
                ),
            )
        return self._boto_client

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str = "", region: str = "", ca_bundle: str = "") -> S3Store:
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        return cls(bucket, prefix, endpoint_url=endpoint_url, region=region, ca_bundle=ca_bundle)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    # --- errors -------------------------------------------------------------------------------------
    def _raise(self, e: BaseException, what: str, key: str = "") -> NoReturn:
        """One CryocloudError for any failure: by the server's HTTP status and S3 error code when it
        answered, as a transport failure when it did not. (Never by loose words in the text: obstore's
        messages carry fields like `retry_timeout` and request ids that would match.)"""
        import obstore.exceptions as oe

        text = str(e)
        status, code, message = _answer(e)
        if isinstance(e, oe.NotFoundError | FileNotFoundError) and code != "NoSuchBucket":
            raise ObjectNotFound(f"no object {key} in {self.url}", "push it first, or check the name") from None
        if code == "NoSuchBucket":
            raise self._no_bucket() from None
        if code == "InvalidObjectState":  # a 403 too, but not about credentials: an archived object
            raise self._archived(key, text) from None
        if status in (401, 403) or code in _DENIED or isinstance(
            e, oe.UnauthenticatedError | oe.PermissionDeniedError | PermissionError
        ):
            raise self._denied(text) from None
        if status >= 500:
            raise CryocloudError(
                f"the S3 server at {self.endpoint_url or 'AWS'} failed ({status} {code}: {message}) during "
                f"{what} {key or self.url}",
                "a problem on the server's side (full, overloaded, read-only): check its logs and free space, "
                "then retry; transfers resume where they stopped",
            )
        if status:
            raise CryocloudError(f"{what} {key or self.url} was refused by the server ({status} {code}: {message})",
                                 "check the storage URL and the key; then retry")
        if any(s in text.lower() for s in _UNTRUSTED):
            raise self._untrusted(text) from None
        if any(s in text.lower() for s in _UNREACHABLE):
            raise self._unreachable(text) from None
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise CryocloudError(f"{what} {key or self.url} failed: {first}", "retry; transfers resume where they stopped")

    def _no_bucket(self) -> CryocloudError:
        return CryocloudError(
            f"bucket {self.bucket!r} does not exist at {self.endpoint_url or 'AWS'}",
            f"create it (aws s3 mb s3://{self.bucket}) or fix storage.url",
        )

    def _archived(self, key: str, detail: str) -> CryocloudError:
        import re

        found = re.search(r"<StorageClass>([A-Z_]+)</StorageClass>", detail)
        cls = found.group(1) if found else "an archive class"
        return CryocloudError(
            f"{key} in {self.url} is archived in {cls} (a tier rule moved it) and cannot be read until restored",
            f"restore it first (aws s3api restore-object --bucket {self.bucket} --key {self._key(key)} "
            "--restore-request Days=7), wait for the restore (hours), then run this again; "
            "`cryocloud project tier` shows which rule moves what",
        )

    def _denied(self, detail: str) -> CryocloudError:
        return CryocloudError(
            f"access to {self.url} was refused ({_short(detail)})",
            "check the AWS credentials boto3 finds (aws sts get-caller-identity; AWS_PROFILE) and the bucket policy",
        )

    def _untrusted(self, detail: str) -> CryocloudError:
        using = f"checked against {self.ca_bundle}" if self.ca_bundle else "checked against the system's CAs"
        return CryocloudError(
            f"the certificate of the S3 endpoint {self.endpoint_url or 'AWS'} does not verify ({using}: "
            f"{_short(detail)})",
            "if the endpoint uses your facility's own certificate authority, point AWS_CA_BUNDLE (or [storage] "
            "ca_bundle) at that CA's PEM file; cryocloud never turns verification off",
        )

    def _unreachable(self, detail: str) -> CryocloudError:
        return CryocloudError(
            f"cannot reach the S3 endpoint {self.endpoint_url or 'AWS'} ({_short(detail)})",
            "check the network and storage.endpoint_url / AWS_ENDPOINT_URL_S3",
        )

    # --- the protocol -------------------------------------------------------------------------------
    async def check(self) -> None:
        """One listing request (delimited, so it is small): endpoint, credentials and bucket all answer."""
        import obstore

        try:
            await obstore.list_with_delimiter_async(self._probe, None)
        except Exception as e:
            text = str(e)
            if "NoSuchBucket" in text or ("404" in text and "Not Found" in text):
                raise self._no_bucket() from None
            self._raise(e, "checking", self.url)

    async def put(self, key: str, data: bytes | bytearray | Iterable[bytes] | Path, size: int | None = None,
                  tags: dict[str, str] | None = None) -> None:
        import obstore

        tagset = tags or None  # sent as x-amz-tagging with the PUT (or CreateMultipartUpload)
        try:
            if isinstance(data, Path):  # read natively by obstore, in parts, several in flight
                multipart = data.stat().st_size > PART_SIZE
                await obstore.put_async(
                    self._store if multipart else self._whole, key, data, use_multipart=multipart,
                    chunk_size=PART_SIZE, max_concurrency=PART_CONCURRENCY, tags=tagset,
                )
            elif isinstance(data, bytes | bytearray | memoryview) or (size is not None and size <= PART_SIZE):
                body = data if isinstance(data, bytes | bytearray | memoryview) else b"".join(data)
                await obstore.put_async(self._whole, key, body, use_multipart=False, tags=tagset)
            else:
                await obstore.put_async(
                    self._store, key, _rechunk(data, PART_SIZE), use_multipart=True,
                    chunk_size=PART_SIZE, max_concurrency=PART_CONCURRENCY, tags=tagset,
                )
        except CryocloudError:
            raise
        except Exception as e:  # obstore raises its own hierarchy and builtins (OSError, ValueError)
            self._raise(e, "upload of", key)

    async def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        return await joined(self.get_stream(key, start, end))

    async def get_stream(self, key: str, start: int | None = None,
                         end: int | None = None) -> AsyncGenerator[memoryview, None]:
        """Chunks as obstore receives them (joined to STREAM_CHUNK in Rust): one GET, no large buffer. A
        whole object read into one buffer costs ~3x the system time here (fresh pages for every buffer)."""
        import obstore

        options: dict[str, Any] = {}
        if start is not None or end is not None:
            if end is None:
                head = await self.head(key)
                end = head.size if head else 0
            if end <= (start or 0):
                return
            options["range"] = (start or 0, end)
        try:
            result = await obstore.get_async(self._store, key, options=cast("GetOptions", options))
            async for chunk in result.stream(min_chunk_size=STREAM_CHUNK):
                yield memoryview(chunk)
        except CryocloudError:
            raise
        except Exception as e:
            self._raise(e, "download of", key)

    async def head(self, key: str, checksum: bool = False) -> ObjectInfo | None:
        import obstore
        import obstore.exceptions as oe

        if checksum:
            return await self._head_checksum(key)
        try:
            meta = await obstore.head_async(self._store, key)
        except (oe.NotFoundError, FileNotFoundError) as e:
            if "NoSuchBucket" in str(e):
                raise self._no_bucket() from None
            return None
        except Exception as e:
            self._raise(e, "lookup of", key)
        return ObjectInfo(key, int(meta["size"]), meta["last_modified"].timestamp())

    async def _head_checksum(self, key: str) -> ObjectInfo | None:
        """HEAD through boto3, which can ask for the stored checksum (obstore's HEAD does not return it)."""
        import asyncio
        import base64

        def call() -> dict[str, Any] | None:
            try:
                return cast("dict[str, Any]", self._client.head_object(
                    Bucket=self.bucket, Key=self._key(key), ChecksumMode="ENABLED"))
            except Exception as e:
                if _answer(e)[0] == 404:
                    return None
                self._raise(e, "lookup of", key)

        got = await asyncio.to_thread(call)
        if got is None:
            return None
        stored, kind = str(got.get("ChecksumSHA256", "")), str(got.get("ChecksumType", "FULL_OBJECT"))
        whole = base64.b64decode(stored).hex() if stored and "-" not in stored and kind == "FULL_OBJECT" else ""
        return ObjectInfo(key, int(got["ContentLength"]), got["LastModified"].timestamp(), sha256=whole)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        import obstore

        try:
            async for batch in obstore.list(self._store, prefix or None, chunk_size=1000):
                for meta in batch:
                    yield ObjectInfo(str(meta["path"]), int(meta["size"]), meta["last_modified"].timestamp())
        except CryocloudError:
            raise
        except Exception as e:
            self._raise(e, "listing of", prefix or self.url)

    async def delete(self, keys: Iterable[str]) -> None:
        import obstore

        batch = list(keys)
        try:
            for i in range(0, len(batch), 1000):
                await obstore.delete_async(self._store, batch[i : i + 1000])
        except Exception as e:
            self._raise(e, "delete in", self.url)


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup a stream into `size`-byte pieces (obstore sends each item it gets as one part or less)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


def _env_credentials() -> dict[str, str]:
    """Static keys from the environment (the first link of boto3's chain), as obstore config; {} if none."""
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not (key and secret):
        return {}
    out = {"access_key_id": key, "secret_access_key": secret}
    if token := os.environ.get("AWS_SESSION_TOKEN", ""):
        out["token"] = token
    return out


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:120]
