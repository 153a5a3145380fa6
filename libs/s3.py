"""A small S3-compatible object client over httpx, signed with AWS Signature Version 4.

Only what Reelbatch needs: put an object, ask whether one exists, create a bucket, and presign a
GET (query-string SigV4) so a browser can fetch an object without credentials. Path-style
addressing (`{endpoint}/{bucket}/{key}`), which every S3-compatible server (MinIO, Ceph, R2, moto)
accepts. The secret key is held privately and never appears in a repr, a log line or an error.
Reference: https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import httpx

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# S3 refuses presigned URLs valid for longer than seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair; the secret is excluded from repr so it cannot leak into logs."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class S3Bucket:
    """Where objects live: an endpoint, a bucket in it, and the region that signs requests."""

    endpoint_url: str
    bucket: str
    region: str

    def object_url(self, key: str) -> str:
        """Path-style URL of `key` (the key is percent-encoded, '/' kept)."""
        return f"{self.endpoint_url.rstrip('/')}/{_uri_encode(self.bucket)}/{_uri_encode(key, safe='/')}"

    def bucket_url(self) -> str:
        """Path-style URL of the bucket itself."""
        return f"{self.endpoint_url.rstrip('/')}/{_uri_encode(self.bucket)}"


class S3Error(Exception):
    """An S3 request that did not succeed; `status` is the HTTP status (0 when none came back)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _uri_encode(value: str, safe: str = "") -> str:
    # SigV4 encodes everything except RFC 3986 unreserved characters (quote keeps '~' since 3.7).
    return quote(value, safe=safe)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _host(url: str) -> str:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if parts.port is not None and parts.port != default_port:
        return f"{host}:{parts.port}"
    return host


def _canonical_query(params: Mapping[str, str]) -> str:
    encoded = sorted((_uri_encode(k), _uri_encode(v)) for k, v in params.items())
    return "&".join(f"{k}={v}" for k, v in encoded)


@dataclass(frozen=True)
class SigV4Signer:
    """Signs S3 requests for one key pair and region (AWS Signature Version 4)."""

    credentials: S3Credentials
    region: str

    def _scope(self, when: datetime) -> str:
        return f"{when:%Y%m%d}/{self.region}/{SERVICE}/aws4_request"

    def _signature(self, when: datetime, canonical_request: str) -> str:
        string_to_sign = "\n".join(
            (
                ALGORITHM,
                f"{when:%Y%m%dT%H%M%SZ}",
                self._scope(when),
                _sha256_hex(canonical_request.encode()),
            )
        )
        key = _hmac(f"AWS4{self.credentials.secret_access_key}".encode(), f"{when:%Y%m%d}")
        for part in (self.region, SERVICE, "aws4_request"):
            key = _hmac(key, part)
        return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()

    def sign_headers(
        self,
        method: str,
        url: str,
        *,
        payload_sha256: str,
        headers: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """The headers to send (given ones plus host, date, payload hash and Authorization)."""
        when = (now or datetime.now(UTC)).astimezone(UTC)
        parts = urlsplit(url)
        signed = {name.lower(): " ".join(value.split()) for name, value in (headers or {}).items()}
        signed["host"] = _host(url)
        signed["x-amz-date"] = f"{when:%Y%m%dT%H%M%SZ}"
        signed["x-amz-content-sha256"] = payload_sha256
        names = sorted(signed)
        query = dict(_split_query(parts.query))
        canonical_request = "\n".join(
            (
                method,
                parts.path or "/",
                _canonical_query(query),
                "".join(f"{name}:{signed[name]}\n" for name in names),
                ";".join(names),
                payload_sha256,
            )
        )
        authorization = (
            f"{ALGORITHM} Credential={self.credentials.access_key_id}/{self._scope(when)}, "
            f"SignedHeaders={';'.join(names)}, Signature={self._signature(when, canonical_request)}"
        )
        # httpx sets Host itself (to the same value); sending it twice would be a protocol error.
        sent = {name: value for name, value in signed.items() if name != "host"}
        sent["authorization"] = authorization
        return sent

    def presign(
        self,
        method: str,
        url: str,
        *,
        expires_seconds: int,
        params: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> str:
        """`url` with a query-string signature, valid for `expires_seconds` (1 s to 7 days)."""
        if not 1 <= expires_seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"expires_seconds must be within 1..{MAX_PRESIGN_SECONDS}")
        when = (now or datetime.now(UTC)).astimezone(UTC)
        parts = urlsplit(url)
        query = dict(_split_query(parts.query))
        query.update(params or {})
        query.update(
            {
                "X-Amz-Algorithm": ALGORITHM,
                "X-Amz-Credential": f"{self.credentials.access_key_id}/{self._scope(when)}",
                "X-Amz-Date": f"{when:%Y%m%dT%H%M%SZ}",
                "X-Amz-Expires": str(expires_seconds),
                "X-Amz-SignedHeaders": "host",
            }
        )
        canonical_query = _canonical_query(query)
        canonical_request = "\n".join(
            (method, parts.path or "/", canonical_query, f"host:{_host(url)}\n", "host", UNSIGNED_PAYLOAD)
        )
        signature = self._signature(when, canonical_request)
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        return f"{base}?{canonical_query}&X-Amz-Signature={signature}"


def _split_query(query: str) -> list[tuple[str, str]]:
    # Our own URLs carry at most bare sub-resources ("?uploads"); values are already unencoded.
    pairs: list[tuple[str, str]] = []
    for item in filter(None, query.split("&")):
        name, _, value = item.partition("=")
        pairs.append((name, value))
    return pairs


class S3Client:
    """Object operations on one bucket, each request signed with SigV4."""

    def __init__(self, http: httpx.AsyncClient, bucket: S3Bucket, credentials: S3Credentials) -> None:
        self._http = http
        self._bucket = bucket
        self._signer = SigV4Signer(credentials, bucket.region)

    @property
    def bucket(self) -> S3Bucket:
        """The bucket this client works on."""
        return self._bucket

    async def put_object(self, key: str, content: bytes, *, content_type: str) -> None:
        """Stores `content` under `key` (replacing it); S3Error when the server refuses."""
        url = self._bucket.object_url(key)
        headers = self._signer.sign_headers(
            "PUT",
            url,
            payload_sha256=_sha256_hex(content),
            headers={"content-type": content_type, "content-length": str(len(content))},
        )
        response = await self._send("PUT", url, headers=headers, content=content)
        if response.status_code != 200:
            raise S3Error(response.status_code, f"PUT {key} refused: {_s3_code(response)}")

    async def object_exists(self, key: str) -> bool:
        """True when `key` exists (HEAD); S3Error for anything but found / not found."""
        url = self._bucket.object_url(key)
        headers = self._signer.sign_headers("HEAD", url, payload_sha256=_sha256_hex(b""))
        response = await self._send("HEAD", url, headers=headers)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise S3Error(response.status_code, f"HEAD {key} refused (HTTP {response.status_code})")

    async def get_object(self, key: str) -> bytes:
        """The bytes of `key` (whole object; meant for checks and small files)."""
        url = self._bucket.object_url(key)
        headers = self._signer.sign_headers("GET", url, payload_sha256=_sha256_hex(b""))
        response = await self._send("GET", url, headers=headers)
        if response.status_code != 200:
            raise S3Error(response.status_code, f"GET {key} refused: {_s3_code(response)}")
        return response.content

    async def create_bucket(self) -> None:
        """Creates the bucket (an existing bucket we own is fine)."""
        url = self._bucket.bucket_url()
        body = b""
        if self._bucket.region != "us-east-1":
            body = (
                '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                f"<LocationConstraint>{self._bucket.region}</LocationConstraint>"
                "</CreateBucketConfiguration>"
            ).encode()
        headers = self._signer.sign_headers("PUT", url, payload_sha256=_sha256_hex(body))
        response = await self._send("PUT", url, headers=headers, content=body)
        if response.status_code != 200 and _s3_code(response) != "BucketAlreadyOwnedByYou":
            raise S3Error(response.status_code, f"create bucket refused: {_s3_code(response)}")

    def presigned_get_url(
        self, key: str, *, expires_seconds: int, params: Mapping[str, str] | None = None
    ) -> str:
        """A GET URL for `key` anyone can use until it expires (`params`: response-* overrides)."""
        return self._signer.presign(
            "GET", self._bucket.object_url(key), expires_seconds=expires_seconds, params=params
        )

    async def _send(
        self, method: str, url: str, *, headers: Mapping[str, str], content: bytes | None = None
    ) -> httpx.Response:
        try:
            return await self._http.request(method, url, headers=headers, content=content)
        except httpx.HTTPError as error:
            # The URL names only endpoint, bucket and key: nothing secret goes into the message.
            raise S3Error(0, f"{method} {url} failed: {type(error).__name__}") from None


def _s3_code(response: httpx.Response) -> str:
    """The <Code> of an S3 error document, or the HTTP status when there is none."""
    text = response.text
    start = text.find("<Code>")
    end = text.find("</Code>", start)
    if start >= 0 and end > start:
        return text[start + len("<Code>") : end][:100]
    return f"HTTP {response.status_code}"
