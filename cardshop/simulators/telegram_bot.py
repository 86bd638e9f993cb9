"""Telegram's Bot API on loopback, for the demo and the tests: `POST /bot<token>/sendMessage` (JSON or a form)
and `getMe`, answered as the real API answers (`{"ok": true, "result": ...}` or `{"ok": false, "error_code": ...,
"description": ...}`, 429 with `parameters.retry_after`). It knows its bots' tokens and their chats, records every
message it accepted, and can be told to throttle or fail. Written from the API's documentation, apart from the code
that calls it (cardshop.services.merchant_alerts), so each checks the other.

Run alone for the demo: `python -m cardshop.simulators.telegram_bot --port 8006 --account-file var/sim/telegram.json`
writes a bot token and a chat id there (kept across restarts) and logs each message it receives.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl

log = logging.getLogger(__name__)

MAX_TEXT = 4096  # the API's limit on a message's text


@dataclass
class BotFaults:
    throttle: int = 0  # the next N calls answer 429 Too Many Requests
    retry_after: int = 3
    fail_5xx: int = 0  # the next N calls answer 502 Bad Gateway (Telegram's own hiccup)


@dataclass
class Sent:
    bot: str
    chat_id: str
    text: str
    message_id: int


@dataclass
class TelegramBotSimulator:
    host: str = "127.0.0.1"
    port: int = 0
    bots: dict[str, set[str]] = field(default_factory=dict)  # token -> chat ids that started the bot
    blocked: set[str] = field(default_factory=set)  # chat ids that blocked the bot
    faults: BotFaults = field(default_factory=BotFaults)
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def new_bot(self, chat_id: str = "") -> tuple[str, str]:
        """A bot (its token) and one chat that has started it: what a merchant gets from @BotFather and /start."""
        token = f"{secrets.randbelow(10**9) + 10**9}:{secrets.token_urlsafe(26)}"
        chat_id = chat_id or str(secrets.randbelow(10**9) + 10**8)
        self.bots[token] = {chat_id}
        return token, chat_id

    def messages_to(self, chat_id: str) -> list[str]:
        return [s.text for s in self.sent if s.chat_id == chat_id]

    # --- the API ----------------------------------------------------------------------------------------------

    def answer(self, token: str, method: str, params: dict) -> tuple[int, dict]:
        with self._lock:
            if self.faults.throttle > 0:
                self.faults.throttle -= 1
                after = self.faults.retry_after
                return 429, _error(429, f"Too Many Requests: retry after {after}", retry_after=after)
            if self.faults.fail_5xx > 0:
                self.faults.fail_5xx -= 1
                return 502, _error(502, "Bad Gateway")
            if token not in self.bots:
                return 401, _error(401, "Unauthorized")
            if method == "getMe":
                return 200, {
                    "ok": True,
                    "result": {"id": int(token.split(":")[0]), "is_bot": True, "first_name": "Shop"},
                }
            if method != "sendMessage":
                return 404, _error(404, "Not Found")
            chat_id, text = str(params.get("chat_id", "")), params.get("text")
            if not chat_id:
                return 400, _error(400, "Bad Request: chat_id is empty")
            if not isinstance(text, str) or not text.strip():
                return 400, _error(400, "Bad Request: message text is empty")
            if len(text) > MAX_TEXT:
                return 400, _error(400, "Bad Request: message is too long")
            if chat_id in self.blocked:
                return 403, _error(403, "Forbidden: bot was blocked by the user")
            if chat_id not in self.bots[token]:
                return 400, _error(400, "Bad Request: chat not found")
            message_id = len(self.sent) + 1
            self.sent.append(Sent(bot=token, chat_id=chat_id, text=text, message_id=message_id))
        log.info("telegram message %s to chat %s:\n%s", message_id, chat_id, text)
        chat = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id, "type": "private"}
        return 200, {
            "ok": True,
            "result": {"message_id": message_id, "date": int(time.time()), "chat": chat, "text": text},
        }

    # --- serving ------------------------------------------------------------------------------------------------

    def start(self) -> TelegramBotSimulator:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "json" in (self.headers.get("Content-Type") or ""):
                    try:
                        params = json.loads(body or b"{}")
                    except ValueError:
                        return self._send(400, _error(400, "Bad Request: can't parse JSON"))
                else:
                    params = dict(parse_qsl(body.decode("utf-8", "replace")))
                self._route(params if isinstance(params, dict) else {})

            def do_GET(self) -> None:  # noqa: N802
                self._route({})

            def _route(self, params: dict) -> None:
                head, _sep, method = self.path.split("?")[0].lstrip("/").partition("/")
                if not head.startswith("bot"):
                    return self._send(404, _error(404, "Not Found"))
                self._send(*simulator.answer(head[3:], method, params))

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        if not self._server:
            raise RuntimeError("the Telegram simulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


def _error(code: int, description: str, **parameters: int) -> dict:
    body: dict = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8006)
    parser.add_argument("--account-file", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sim = TelegramBotSimulator(port=args.port)
    known = json.loads(args.account_file.read_text()) if args.account_file.exists() else {}
    if known.get("token") and known.get("chat_id"):
        sim.bots[known["token"]] = {known["chat_id"]}
        token, chat_id = known["token"], known["chat_id"]
    else:
        token, chat_id = sim.new_bot()
    sim.start()
    args.account_file.write_text(json.dumps({"base_url": sim.base_url, "token": token, "chat_id": chat_id}))
    log.info("Telegram Bot API simulator on %s", sim.base_url)
    threading.Event().wait()


if __name__ == "__main__":
    main()
