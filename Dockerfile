# syntax=docker/dockerfile:1
# Build: docker build -t newsbot .
# Run:   docker run -e NEWSBOT_TOKEN=... -e NEWSBOT_ADMIN_IDS=... -v newsbot-data:/data newsbot
# Ports: 8080 serves /healthz and /metrics (NEWSBOT_HTTP_PORT); in webhook mode the webhook
# server listens on NEWSBOT_WEBHOOK_PORT (8443 unless set), behind your TLS proxy.

FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/venv
# Dependencies first, from the project's metadata and pinned versions only, so that a change
# to the code reuses this layer: empty packages stand in for the code while they install.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir bot storage && touch bot/__init__.py storage/__init__.py \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt .
# The same install step as README's (pip install -c constraints.txt .), now with the code.
COPY bot ./bot
COPY storage ./storage
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --force-reinstall -c constraints.txt .

FROM python:3.11.7-slim-bookworm
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
EXPOSE 8080 8443
# Asks the bot's own /healthz on whatever NEWSBOT_HTTP_PORT says.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["newsbot", "healthcheck"]
ENTRYPOINT ["newsbot"]
CMD ["run"]
