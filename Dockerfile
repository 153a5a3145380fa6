# One image for every Reelbatch process; the command picks the process.
FROM python:3.11-slim
COPY --from=ghcr.io/astral-sh/uv:0.5.11 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PATH=/app/.venv/bin:$PATH
COPY pyproject.toml uv.lock README.md ./
COPY libs libs
COPY services services
RUN uv sync --frozen --no-dev
USER nobody
ENTRYPOINT ["reelbatch"]
