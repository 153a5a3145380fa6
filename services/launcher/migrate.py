"""Brings every service's database schema to its latest migration, and creates the video bucket
when videos go to S3 and the bucket does not exist yet (a compose MinIO, a fresh account)."""

from __future__ import annotations

import asyncio
import importlib
import logging

from libs.config import Settings
from libs.s3 import S3Bucket, S3Client, S3Credentials, S3Error
from services.launcher.registry import SERVICES

log = logging.getLogger(__name__)


def migrate(settings: Settings) -> None:
    """Creates the database if needed, then applies every service's migrations."""
    from libs.migrations import ensure_database

    ensure_database(settings.database_url)
    for kind in SERVICES.values():
        if kind.migrates:
            importlib.import_module(f"services.{kind.name}.bootstrap").migrate(settings.database_url)
    if settings.video_storage == "s3":
        asyncio.run(ensure_video_bucket(settings))


async def ensure_video_bucket(settings: Settings) -> None:
    """Creates the video bucket if the server says it does not exist. A server that cannot be
    reached fails the migration (a wrong endpoint is found before any video is lost); a key that
    may not look at the bucket (no s3:ListBucket) leaves the question to the first upload."""
    client = S3Client(
        S3Bucket(settings.s3_endpoint_url, settings.s3_bucket, settings.s3_region),
        S3Credentials(settings.s3_access_key_id, settings.s3_secret_access_key.get_secret_value()),
        timeout_seconds=settings.grpc_deadline_seconds,
    )
    try:
        try:
            exists = await client.bucket_exists()
        except S3Error as error:
            if error.status == 0:
                raise SystemExit(
                    f"video storage at {settings.s3_endpoint_url} is unreachable: {error}"
                ) from None
            log.warning(
                "cannot tell whether bucket %s exists (%s); not creating it", settings.s3_bucket, error
            )
            return
        if not exists:
            await client.create_bucket()
            log.info("created the video bucket %s", settings.s3_bucket)
    finally:
        await client.close()
