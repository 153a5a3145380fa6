"""Item settings at intake: every item's generation settings checked against its model's
capabilities (with the tenant's uploaded files and the SSRF screen of image URLs), and each
item's priced options worked out for its quote line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from libs.errors import FieldViolation
from services.batch.domain.batch import BatchItem, TenantId
from services.batch.domain.generation import (
    INVALID_URL,
    NO_SETTINGS,
    ModelCapabilities,
    UrlPolicy,
    field_parts,
    options_key,
    price_options,
    referenced_files,
    settings_violations,
)


class InputFileLookup(Protocol):
    """Which of some file ids the tenant uploaded."""

    async def known_files(self, tenant_id: TenantId, file_ids: Sequence[str]) -> set[str]:
        """The ids among `file_ids` that name one of the tenant's input files."""
        ...


class UrlScreen(Protocol):
    """The SSRF rule applied to image URLs when a batch is created (and again at fetch)."""

    async def refusals(self, urls: Sequence[str]) -> dict[str, str]:
        """Why each refused URL is refused; URLs not in the answer may be fetched."""
        ...


@dataclass(frozen=True)
class CheckedSettings:
    """The outcome of `ItemSettings.check`: violations, and item i's priced options (empty
    tuple when no item has any)."""

    violations: list[FieldViolation]
    options: tuple[str, ...]


class ItemSettings:
    """Checks and prices the generation settings of a batch's items."""

    def __init__(
        self,
        capabilities: Mapping[str, ModelCapabilities],
        files: InputFileLookup,
        screen: UrlScreen,
        policy: UrlPolicy,
    ) -> None:
        self._capabilities = capabilities
        self._files = files
        self._screen = screen
        self._policy = policy
        # The options of an item that sets nothing, per model (most items of most batches).
        self._defaults = {
            model: options_key(price_options(NO_SETTINGS, capabilities))
            for model, capabilities in capabilities.items()
        }

    async def check(self, tenant_id: TenantId, items: Sequence[BatchItem]) -> CheckedSettings:
        """Every settings violation of the items (models billing does not know are its to refuse)."""
        with_settings = [
            (index, item) for index, item in enumerate(items) if item.settings is not NO_SETTINGS
        ]
        options = self._options(items, with_settings)
        if not with_settings:
            return CheckedSettings([], options)
        wanted = sorted(referenced_files([item.settings for _, item in with_settings]))
        files = frozenset(await self._files.known_files(tenant_id, wanted)) if wanted else frozenset()
        found: list[FieldViolation] = []
        urls: dict[str, list[tuple[str | int, ...]]] = {}
        for index, item in with_settings:
            capabilities = self._capabilities.get(item.model)
            if capabilities is None:
                continue
            found += settings_violations(index, item.model, item.settings, capabilities, self._policy, files)
            for name, image in item.settings.images():
                if image.url:
                    location = ("items", index, "settings", *field_parts(name), "url")
                    urls.setdefault(image.url, []).append(location)
        if urls:
            shaped = {violation.location for violation in found}
            refused = await self._screen.refusals(
                [url for url, where in urls.items() if where[0] not in shaped]
            )
            for url, message in refused.items():
                found += [FieldViolation(location, INVALID_URL, message) for location in urls[url]]
        return CheckedSettings(found, options)

    def _options(
        self, items: Sequence[BatchItem], with_settings: Sequence[tuple[int, BatchItem]]
    ) -> tuple[str, ...]:
        if not with_settings and not any(
            self._defaults.get(model) for model in {item.model for item in items}
        ):
            return ()
        options = [self._defaults.get(item.model, "") for item in items]
        for index, item in with_settings:
            capabilities = self._capabilities.get(item.model)
            if capabilities is not None:
                options[index] = options_key(price_options(item.settings, capabilities))
        return tuple(options)
