"""Reelbatch's Python SDK: a typed client of the customer API (sync and asyncio), and `reelbatch-client`.

    from reelbatch_client import Client
    with Client() as client:          # REELBATCH_API_KEY, REELBATCH_BASE_URL
        accepted = client.submit_file("prompts.csv", model="veo-3")
        client.wait(accepted.batch_id)
        client.download_results(accepted.batch_id, "out/")

Webhook verification is in `reelbatch_client.webhooks` (extra `[webhooks]`), the command line in
`reelbatch_client.cli` (extra `[cli]`). This package never imports the server's code.
"""

from reelbatch_client.async_client import AsyncClient
from reelbatch_client.client import Client
from reelbatch_client.config import ConfigurationError
from reelbatch_client.downloads import DownloadProgress, DownloadSummary
from reelbatch_client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationFailed,
    BadRequest,
    BudgetExceeded,
    Conflict,
    FileFormatError,
    Gone,
    InsufficientCredits,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    ReelbatchError,
    RetryableError,
    ServerError,
    Unavailable,
    ValidationFailed,
    WaitTimeout,
)
from reelbatch_client.models import (
    Batch,
    BatchAccepted,
    BatchItem,
    Credits,
    GenerationSettings,
    ImageInput,
    LedgerEntry,
    ResultLine,
    Task,
)
from reelbatch_client.retrying import RateLimit, RetryPolicy

__version__ = "0.1.0"
__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AuthenticationFailed",
    "BadRequest",
    "Batch",
    "BatchAccepted",
    "BatchItem",
    "BudgetExceeded",
    "Client",
    "ConfigurationError",
    "Conflict",
    "Credits",
    "DownloadProgress",
    "DownloadSummary",
    "FileFormatError",
    "GenerationSettings",
    "Gone",
    "ImageInput",
    "InsufficientCredits",
    "LedgerEntry",
    "NotFound",
    "PaymentRequired",
    "PermissionDenied",
    "RateLimit",
    "RateLimited",
    "ReelbatchError",
    "ResultLine",
    "RetryPolicy",
    "RetryableError",
    "ServerError",
    "Task",
    "Unavailable",
    "ValidationFailed",
    "WaitTimeout",
]
