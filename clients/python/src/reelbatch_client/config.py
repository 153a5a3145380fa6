"""Where the API key and the API's address come from: arguments, then the environment, then a file.

Environment: `REELBATCH_API_KEY`, `REELBATCH_BASE_URL`. File: `REELBATCH_CONFIG`, else
`~/.config/reelbatch/config.toml` (`$XDG_CONFIG_HOME` honoured), with top-level `api_key` and
`base_url` keys. The address defaults to a local `make run` (http://127.0.0.1:8000).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from reelbatch_client.errors import ReelbatchError

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
USER_AGENT = "reelbatch-client-python/0.1.0"


class ConfigurationError(ReelbatchError):
    """No API key anywhere, or an unreadable config file."""


def config_path() -> Path:
    """The config file this process would read (it need not exist)."""
    explicit = os.environ.get("REELBATCH_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "reelbatch" / "config.toml"


def _file_values(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigurationError(f"cannot read {path}: {error}") from error
    return {key: str(values[key]) for key in ("api_key", "base_url") if key in values}


@dataclass(frozen=True)
class ClientSettings:
    """The resolved API key and base URL."""

    api_key: str
    base_url: str

    @classmethod
    def resolve(cls, api_key: str | None = None, base_url: str | None = None) -> ClientSettings:
        """Arguments first, then REELBATCH_API_KEY / REELBATCH_BASE_URL, then the config file."""
        from_file = _file_values(config_path()) if not (api_key and base_url) else {}
        key = api_key or os.environ.get("REELBATCH_API_KEY") or from_file.get("api_key")
        if not key:
            raise ConfigurationError(
                f"no API key: pass api_key, set REELBATCH_API_KEY, or put api_key in {config_path()}"
            )
        url = (
            base_url or os.environ.get("REELBATCH_BASE_URL") or from_file.get("base_url") or DEFAULT_BASE_URL
        )
        return cls(key, url.rstrip("/"))

    def headers(self) -> dict[str, str]:
        """The headers of every request."""
        return {"X-API-Key": self.api_key, "User-Agent": USER_AGENT}
