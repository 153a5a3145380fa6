"""Input images of a task, resolved by the worker before its first provider call: uploaded files
read from storage, URLs fetched under the SSRF rule (pinned to the checked address, no redirects)
with size and type limits. Also the same rule's check of URLs when a batch is created."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from libs.outbound.destinations import (
    DestinationPolicy,
    IpAddress,
    OutboundTarget,
    UnsafeUrl,
    check_resolved,
    parse_target,
)
from libs.outbound.network import SystemResolver, host_header, pinned_url
from services.batch.adapters.input_files import InputFileStore
from services.batch.domain.batch import TenantId
from services.batch.domain.generation import (
    NO_IMAGES,
    GenerationSettings,
    ImageRef,
    InputImage,
    ResolvedImages,
    image_problem,
    image_type,
)
from services.batch.domain.provider import FailureType, ProviderFailure

_SUBJECT = "image URL"


class InputImageRefused(ProviderFailure):
    """An input image that cannot be used: the task fails as invalid_input (refunded), never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureType.INVALID_INPUT, message, transient=False)


class UrlScreener:
    """The `UrlScreen` port: the SSRF rule with DNS, for the distinct URLs of a new batch."""

    def __init__(self, policy: DestinationPolicy, resolver: SystemResolver | None = None) -> None:
        self._policy = policy
        self._resolver = resolver or SystemResolver()

    async def refusals(self, urls: Sequence[str]) -> dict[str, str]:
        """Why each refused URL is refused (distinct hosts resolved once, concurrently)."""
        refused: dict[str, str] = {}
        targets: dict[str, OutboundTarget] = {}
        for url in urls:
            try:
                targets[url] = parse_target(url, self._policy, _SUBJECT)
            except UnsafeUrl as unsafe:
                refused[url] = unsafe.message
        hosts = sorted({(target.host, target.port) for target in targets.values()})
        resolved = dict(
            zip(hosts, await asyncio.gather(*(self._resolver.resolve(*host) for host in hosts)), strict=True)
        )
        for url, target in targets.items():
            try:
                check_resolved(target, resolved[(target.host, target.port)], self._policy, _SUBJECT)
            except UnsafeUrl as unsafe:
                refused[url] = unsafe.message
        return refused


class InputImageResolver:
    """Fetches or reads a task's input images (one shared HTTP pool)."""

    def __init__(
        self,
        files: InputFileStore,
        policy: DestinationPolicy,
        *,
        max_bytes: int,
        timeout_seconds: float,
        resolver: SystemResolver | None = None,
    ) -> None:
        self._files = files
        self._policy = policy
        self._max_bytes = max_bytes
        self._timeout = timeout_seconds
        self._resolver = resolver or SystemResolver()
        self._client = httpx.AsyncClient(follow_redirects=False, timeout=timeout_seconds)

    async def resolve(self, tenant_id: TenantId, settings: GenerationSettings) -> ResolvedImages:
        """Every image of the settings; raises InputImageRefused for the first that cannot be used."""
        if settings.first_frame is None and settings.last_frame is None and not settings.reference_images:
            return NO_IMAGES
        first = await self._image(tenant_id, "first_frame", settings.first_frame)
        last = await self._image(tenant_id, "last_frame", settings.last_frame)
        references = [
            await self._image(tenant_id, f"reference_images[{index}]", image)
            for index, image in enumerate(settings.reference_images)
        ]
        return ResolvedImages(
            first_frame=first,
            last_frame=last,
            reference_images=tuple(image for image in references if image is not None),
        )

    async def _image(self, tenant_id: TenantId, name: str, image: ImageRef | None) -> InputImage | None:
        if image is None:
            return None
        if image.file_id:
            content = await self._files.get(str(tenant_id), image.file_id)
            if content is None:
                raise InputImageRefused(f"{name}: input file {image.file_id} is gone")
        else:
            content = await self._fetch(name, image.url)
        problem = image_problem(content, self._max_bytes)
        mime = image_type(content)
        if problem is not None or mime is None:
            raise InputImageRefused(f"{name}: {problem}")
        return InputImage(content=content, mime_type=mime)

    async def _fetch(self, name: str, url: str) -> bytes:
        try:
            target = parse_target(url, self._policy, _SUBJECT)
            addresses = await self._resolver.resolve(target.host, target.port)
            check_resolved(target, addresses, self._policy, _SUBJECT)
        except UnsafeUrl as unsafe:
            raise InputImageRefused(f"{name}: {unsafe.message}") from None
        try:
            async with asyncio.timeout(self._timeout):
                return await self._download(target, addresses[0], name)
        except (TimeoutError, httpx.HTTPError) as error:
            raise InputImageRefused(f"{name}: fetching the image failed ({type(error).__name__})") from None

    async def _download(self, target: OutboundTarget, address: IpAddress, name: str) -> bytes:
        request = self._client.build_request(
            "GET",
            pinned_url(target, address),
            headers={"host": host_header(target), "user-agent": "Reelbatch-Inputs/1"},
            extensions={"sni_hostname": target.host},
        )
        response = await self._client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise InputImageRefused(f"{name}: the image URL answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
                raise InputImageRefused(f"{name}: the image is larger than {self._max_bytes} bytes")
            received = bytearray()
            async for chunk in response.aiter_bytes():
                received += chunk
                if len(received) > self._max_bytes:
                    # Stop reading at once: a huge or endless body costs us nothing more.
                    raise InputImageRefused(f"{name}: the image is larger than {self._max_bytes} bytes")
            return bytes(received)
        finally:
            await response.aclose()

    async def close(self) -> None:
        """Closes the HTTP pool."""
        await self._client.aclose()
