"""newsbot command line: run the bot, check a feed, ingest once, back up, health check.

Settings are read here, once, and handed down. Every failure ends in one line on stderr
(through the logging set-up, which removes the token from anything it prints).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import re
import sys
import urllib.error
import urllib.request
import zoneinfo
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from bot.clock import Clock, RealClock
from bot.config import ConfigError, Settings, load_settings
from bot.context import feed_client, open_services, read_feeds_config
from bot.logs import setup_logging
from bot.pipeline import fetch, parse
from bot.pipeline.discover import Offer, find_source
from bot.pipeline.sources import KIND_NAMES, read_document
from bot.pipeline.urls import redact_url
from bot.render import plural
from bot.runner import run_bot
from bot.stages.poll import enqueue_unmatched, poll_due_feeds
from storage import backup as storage_backup
from storage.db import StorageError
from storage.lock import ProcessLock
from storage.models import SectionRule

log = logging.getLogger("newsbot")
# A feed not in the feeds file: its items' sections from any category naming a section.
CHECK_RULE = SectionRule(kind="category")


def package_version() -> str:
    """The installed package's version: pyproject.toml's, as the install recorded it in the
    package metadata (the one place it is written)."""
    try:
        return importlib.metadata.version("newsbot")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newsbot",
        description="Telegram news alerts from a news site's feeds. Settings come from NEWSBOT_* "
        "environment variables or a .env file (see README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "run",
        help="run the bot (needs NEWSBOT_TOKEN)",
        description="Run the bot: poll the feeds, deliver alerts, answer commands. Stops cleanly "
        "on SIGTERM/SIGINT.",
    )
    check = sub.add_parser(
        "check-feed",
        help="fetch or read one feed and print its stories (no token needed)",
        description="Print what kind of source a URL or file is (RSS/Atom, JSON Feed, news sitemap, HTML "
        "listing page), then every story: id, section, published time, title and link, and a count. "
        "Given a site's or section's page, it lists what the page offers (its feeds, the sitemaps in "
        "its site's robots.txt, the page itself as a listing page) and reads the first. Nothing is stored.",
    )
    check.add_argument("source", metavar="URL|PATH")
    sub.add_parser(
        "ingest",
        help="poll every configured feed once into the database",
        description="Poll every feed of NEWSBOT_FEEDS once, store what is new, queue alerts for "
        "subscribers, and print one summary line per feed. No token needed.",
    )
    backup = sub.add_parser(
        "backup",
        help="copy the database while the bot runs (consistent)",
        description="Write a consistent copy of NEWSBOT_DB to PATH with SQLite's online backup "
        "API and check it (PRAGMA integrity_check); the bot may keep running. PATH may be any "
        "file name but the live database's own. See docs/operations.md for restoring it.",
    )
    backup.add_argument("target", metavar="PATH")
    sub.add_parser(
        "healthcheck",
        help="ask the running bot's /healthz (exit 0 when healthy)",
        description="GET /healthz from the bot on NEWSBOT_HTTP_PORT (the Docker HEALTHCHECK). "
        "Prints the answer; exit status 0 when healthy, 1 otherwise.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Opt in to python-telegram-bot's timedelta durations (RetryAfter.retry_after); without it
    # every 429 logs a deprecation warning.
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    try:
        settings = load_settings()
        setup_logging(settings.log_level, [settings.token or "", settings.webhook_secret or ""])
        clock = RealClock()  # the one clock of this process
        if args.command == "check-feed":
            return asyncio.run(check_feed(settings, args.source, clock))
        if args.command == "ingest":
            return asyncio.run(ingest(settings, clock))
        if args.command == "healthcheck":
            return healthcheck(settings)
        if args.command == "backup":
            return asyncio.run(backup(settings, Path(args.target)))
        return run_bot(settings, clock)
    except (ConfigError, StorageError) as exc:
        print(f"newsbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Logged, not printed: the log handler removes the token from the traceback.
        log.critical("stopped by an unexpected error: %s", exc, exc_info=exc)
        return 1


def _read_local(source: str) -> tuple[bytes, str, dict[str, str]] | None:
    """A local file's bytes, or None for a URL; a path that is not a file is said so."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", source, re.IGNORECASE):
        return None
    path = Path(source)
    if not path.exists():
        raise OSError(f"{source}: no such file (give a file or an http(s) URL)")
    if not path.is_file():
        raise OSError(f"{source}: not a file (give a file or an http(s) URL)")
    return path.read_bytes(), path.resolve().as_uri(), {}


async def check_feed(settings: Settings, source: str, clock: Clock) -> int:
    config = read_feeds_config(settings)
    sections = config.section_names() if config else None
    spec = next((f for f in config.feeds if f.url == source), None) if config else None
    rule = spec.rule if spec is not None else CHECK_RULE
    zone = zoneinfo.ZoneInfo(settings.timezone)
    now = clock.time()
    safe = settings.url_safe_params
    offers: tuple[Offer, ...] = ()
    try:
        local = _read_local(source)
        async with feed_client(settings) as client:
            if local is not None:
                body, url, headers = local
                fetched = fetch.FetchResult(url=url, status=200, not_modified=False, body=body, headers=headers,
                                            etag=None, last_modified=None, elapsed=0.0, store_url=url)
            else:
                found = await find_source(client, source, max_bytes=settings.fetch_max_bytes,
                                          total_timeout=settings.fetch_timeout * 3, safe_params=safe)
                fetched, offers = found.fetched, found.offers
            parsed = await read_document(
                client, fetched, kind=spec.kind if spec else "auto", selector=spec.selector if spec else None,
                rule=rule, fetched_at=now, sections=sections, max_bytes=settings.fetch_max_bytes,
                total_timeout=settings.fetch_timeout * 3, safe_params=safe,
            )
    except (fetch.FetchError, parse.ParseError, OSError) as exc:
        print(f"newsbot: {exc}", file=sys.stderr)
        return 1
    print(f"kind: {KIND_NAMES.get(parsed.kind, parsed.kind)}")
    if local is None and fetched.url != source:
        print(f"feed: {redact_url(fetched.url, safe)}")
    for offer in offers:
        taken = " (taken)" if offer.url in (fetched.url, fetched.store_url) else ""
        print(f"offered: {KIND_NAMES.get(offer.kind, offer.kind)}, {offer.how}: {redact_url(offer.url, safe)}{taken}")
    if parsed.note:
        print(f"note: {parsed.note}")
    print(f"id\tsection\tpublished ({settings.timezone})\ttitle\tlink")
    for article in parsed.articles:
        section = (sections or {}).get(article.section or "", article.section or "-")
        published = datetime.fromtimestamp(article.published_at, zone).strftime("%Y-%m-%d %H:%M %Z")
        print(f"{article.id}\t{section}\t{published}\t{article.title}\t{article.url}")
    print(f"{len(parsed.articles)} {'story' if len(parsed.articles) == 1 else 'stories'}")
    return 0


async def backup(settings: Settings, target: Path) -> int:
    await storage_backup.backup(Path(settings.db_path), target)
    print(f"backup written and checked: {target}")
    return 0


def healthcheck(settings: Settings) -> int:
    if settings.http_port is None:
        raise ConfigError("NEWSBOT_HTTP_PORT: not set (the health endpoint is off)")
    # A wildcard listen address is reached on loopback from inside the same host or container.
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    url = f"http://{host}:{settings.http_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            print(response.read().decode("utf-8", "replace").strip())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.read().decode("utf-8", "replace").strip())
    except OSError as exc:
        print(f"newsbot: {url}: {exc}", file=sys.stderr)
    return 1


async def ingest(settings: Settings, clock: Clock) -> int:
    if settings.feeds_path is None:
        raise ConfigError("NEWSBOT_FEEDS: not set (path to the feeds file, e.g. feeds.example.toml)")
    lock = ProcessLock(Path(settings.db_path))
    lock.acquire()
    try:
        services = await open_services(settings, clock=clock)
        try:
            await enqueue_unmatched(services)
            summary = await poll_due_feeds(services, all_feeds=True)
        finally:
            await services.close()
    finally:
        lock.release()
    failed = 0
    for o in summary.outcomes:
        shown = f"feed {o.feed.id} {redact_url(o.feed.url, settings.url_safe_params)}"
        if o.result == "error":
            failed += 1
            print(f"{shown}: error: {o.error}")
        elif o.result == "not_modified":
            print(f"{shown}: not modified")
        elif o.result == "primed":
            print(f"{shown}: {o.items} items, first poll: stored as already seen")
        else:
            extra = f", {o.not_alerted} not alerted" if o.not_alerted else ""
            print(f"{shown}: {o.items} items, {len(o.new)} new{extra}")
    print(
        f"{plural(len(summary.outcomes), 'feed')}, {plural(summary.new_articles, 'new article')}, "
        f"{plural(summary.queued, 'alert')} queued, {failed} failed"
    )
    return 1 if failed and failed == len(summary.outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
