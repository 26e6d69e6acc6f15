"""Webhook mode: PTB's webhook server with the secret token; requests without it are refused.

Telegram delivers webhook updates itself, so these tests play Telegram's part and POST
updates to the bot's local listener; replies still go to the fake Bot API server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import webhook_options
from tests.conftest import REPO
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import bot_settings, running_bot
from tests.simtime import SimClock

SECRET = "s3cret_Token-42"
PUBLIC_URL = "https://bot.example/telegram/hook"
READER = 777


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook_env(port: int) -> dict[str, str]:
    return {
        "NEWSBOT_WEBHOOK_URL": PUBLIC_URL,
        "NEWSBOT_WEBHOOK_SECRET": SECRET,
        "NEWSBOT_WEBHOOK_LISTEN": "127.0.0.1",
        "NEWSBOT_WEBHOOK_PORT": str(port),
    }


def an_update(tg: FakeTelegram, text: str, update_id: int) -> dict[str, Any]:
    return {"update_id": update_id, **tg.user_message(READER, text, push=False)}


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def test_options_come_from_the_settings(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = bot_settings(tg, tmp_path, **webhook_env(8443))
    options = webhook_options(settings)
    assert options["listen"] == "127.0.0.1" and options["port"] == 8443
    assert options["url_path"] == "telegram/hook"  # the public URL's path, served as is
    assert options["webhook_url"] == PUBLIC_URL and options["secret_token"] == SECRET
    assert "my_chat_member" in options["allowed_updates"]
    with pytest.raises(ValueError, match="NEWSBOT_WEBHOOK_URL"):
        webhook_options(bot_settings(tg, tmp_path))


async def test_updates_need_the_secret_token(clock: SimClock, sim_tg: FakeTelegram, tmp_path: Path) -> None:
    tg = sim_tg
    port = free_port()
    settings = bot_settings(tg, tmp_path, **webhook_env(port))
    async with running_bot(settings, clock=clock) as rt:
        app = rt.app
        assert app.updater is not None and app.updater.running  # the runner started it
        assert rt.services.status.webhook
        (registered,) = tg.calls("setWebhook")
        assert registered.params["url"] == PUBLIC_URL
        assert registered.params["secret_token"] == SECRET

        url = f"http://127.0.0.1:{port}/telegram/hook"
        async with httpx.AsyncClient(timeout=10) as client:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
                            {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"}):
                refused = await client.post(url, json=an_update(tg, "/help", 1), headers=headers)
                assert refused.status_code == 403, headers
            elsewhere = await client.post(
                f"http://127.0.0.1:{port}/", json=an_update(tg, "/help", 2),
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
            )
            assert elsewhere.status_code == 404
            assert tg.sent_messages(READER) == []

            accepted = await client.post(
                url, json=an_update(tg, "/start", 3), headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            )
            assert accepted.status_code == 200
        [reply] = await tg.await_messages(READER, 1, timeout=10)
        assert "Welcome" in reply["text"]
    assert tg.calls("getUpdates") == []


def test_newsbot_run_serves_the_webhook(tg: FakeTelegram, tmp_path: Path) -> None:
    """`newsbot run` with a webhook URL: the same options, through run_webhook."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSBOT_")}
    env.update({"PYTHONPATH": str(REPO), "NEWSBOT_DB": str(tmp_path / "newsbot.db"), **tg.bot_env(),
                **webhook_env(port)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=tmp_path, env=env,
    )
    try:
        tg.wait_for_calls("setWebhook", 1, timeout=30)
        url = f"http://127.0.0.1:{port}/telegram/hook"
        deadline = time.monotonic() + 30
        while True:  # setWebhook comes just before the listener is up
            try:
                refused = httpx.post(url, content=json.dumps(an_update(tg, "/help", 1)),
                                     headers={"Content-Type": "application/json"}, timeout=5)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert refused.status_code == 403
        accepted = httpx.post(url, json=an_update(tg, "/help", 2), timeout=5,
                              headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
        assert accepted.status_code == 200
        [reply] = tg.wait_for_messages(READER, 1, timeout=30)
        assert "/follow" in reply["text"]
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert SECRET not in stdout + stderr
    assert tg.calls("getUpdates") == []
