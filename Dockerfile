# syntax=docker/dockerfile:1
# Build: docker build -t newsbot .
# Run:   docker run -e NEWSBOT_TOKEN=... -e NEWSBOT_ADMIN_IDS=... -v newsbot-data:/data newsbot

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY storage ./storage
# The same install step as README's: pip install . (into a venv that the runtime stage copies).
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 newsbot \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /data newsbot \
    && mkdir -p /data /etc/newsbot \
    && chown newsbot:newsbot /data
COPY --from=build /opt/venv /opt/venv
COPY feeds.example.toml /etc/newsbot/feeds.toml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PTB_TIMEDELTA=1 \
    NEWSBOT_DB=/data/newsbot.db \
    NEWSBOT_FEEDS=/etc/newsbot/feeds.toml \
    NEWSBOT_HTTP_HOST=0.0.0.0 \
    NEWSBOT_HTTP_PORT=8080
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["newsbot"]
CMD ["run"]
