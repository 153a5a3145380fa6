"""Where the SDK and CLI find their key and address (arguments, environment, config file), and the
exit code each kind of failure ends the command with."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from reelbatch_client.cli_codes import ExitCode, exit_code_of
from reelbatch_client.config import ClientSettings, ConfigurationError
from reelbatch_client.errors import (
    APIConnectionError,
    FileFormatError,
    WaitTimeout,
    error_from_response,
)


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("REELBATCH_CONFIG", str(path))
    monkeypatch.delenv("REELBATCH_API_KEY", raising=False)
    monkeypatch.delenv("REELBATCH_BASE_URL", raising=False)
    return path


def test_arguments_beat_the_environment_which_beats_the_file(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text('api_key = "from-file"\nbase_url = "https://file.example/"\n')
    assert ClientSettings.resolve() == ClientSettings("from-file", "https://file.example")
    monkeypatch.setenv("REELBATCH_API_KEY", "from-env")
    assert ClientSettings.resolve().api_key == "from-env"
    assert ClientSettings.resolve("from-arg", "http://arg/").base_url == "http://arg"


def test_no_key_anywhere_and_a_broken_file_are_configuration_errors(config_file: Path) -> None:
    with pytest.raises(ConfigurationError, match="no API key"):
        ClientSettings.resolve()
    config_file.write_text("api_key = \n")
    with pytest.raises(ConfigurationError, match="cannot read"):
        ClientSettings.resolve()


def _api_error(status: int, code: str) -> Exception:
    return error_from_response(
        httpx.Response(status, json={"ok": False, "error": {"code": code, "message": "m"}})
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigurationError("x"), ExitCode.USAGE),
        (FileFormatError("x", line=3), ExitCode.USAGE),
        (_api_error(422, "validation_error"), ExitCode.REFUSED),
        (_api_error(404, "not_found"), ExitCode.REFUSED),
        (_api_error(401, "unauthorized"), ExitCode.AUTH),
        (_api_error(403, "forbidden"), ExitCode.AUTH),
        (_api_error(402, "insufficient_credits"), ExitCode.PAYMENT),
        (_api_error(402, "budget_exceeded"), ExitCode.PAYMENT),
        (_api_error(429, "rate_limited"), ExitCode.UNAVAILABLE),
        (_api_error(503, "unavailable"), ExitCode.UNAVAILABLE),
        (_api_error(500, "internal"), ExitCode.UNAVAILABLE),
        (APIConnectionError("down"), ExitCode.UNAVAILABLE),
        (WaitTimeout("slow"), ExitCode.TIMEOUT),
        (RuntimeError("bug"), ExitCode.ERROR),
    ],
)
def test_each_failure_has_its_exit_code(error: Exception, code: ExitCode) -> None:
    assert exit_code_of(error) == code
