"""The exit codes of `reelbatch-client`, and which error ends in which (a script reads `$?`)."""

from __future__ import annotations

from enum import IntEnum

from reelbatch_client.config import ConfigurationError
from reelbatch_client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationFailed,
    FileFormatError,
    PaymentRequired,
    PermissionDenied,
    RetryableError,
    ServerError,
    WaitTimeout,
)


class ExitCode(IntEnum):
    """What a script can read from `$?`."""

    OK = 0  # done; with --wait, every item succeeded
    ERROR = 1  # an unexpected error
    USAGE = 2  # bad arguments, no API key, an unreadable input file
    REFUSED = 3  # the API refused the request (4xx: validation, not found, conflict)
    AUTH = 4  # the API key is missing, unknown, revoked or lacks the scope (401, 403)
    PAYMENT = 5  # not enough credits, or over budget (402); nothing was charged
    ITEMS_FAILED = 6  # the batch finished with failed or cancelled items (partial, failed, cancelled)
    UNAVAILABLE = 7  # the API or the network stayed unavailable through the retries (429, 5xx)
    TIMEOUT = 8  # --timeout passed before the batch finished (or no webhook arrived in time)
    BAD_SIGNATURE = 9  # webhooks test: a webhook did not verify


def exit_code_of(error: Exception) -> ExitCode:
    """The exit code of an error raised by a command."""
    table: list[tuple[type[Exception], ExitCode]] = [
        (ConfigurationError, ExitCode.USAGE),
        (FileFormatError, ExitCode.USAGE),
        (WaitTimeout, ExitCode.TIMEOUT),
        (AuthenticationFailed, ExitCode.AUTH),
        (PermissionDenied, ExitCode.AUTH),
        (PaymentRequired, ExitCode.PAYMENT),
        (RetryableError, ExitCode.UNAVAILABLE),
        (ServerError, ExitCode.UNAVAILABLE),
        (APIConnectionError, ExitCode.UNAVAILABLE),
        (APIError, ExitCode.REFUSED),
        (OSError, ExitCode.USAGE),
    ]
    return next((code for kind, code in table if isinstance(error, kind)), ExitCode.ERROR)
