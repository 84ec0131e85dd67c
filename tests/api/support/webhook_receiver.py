"""A receiver of the service's outbound webhooks for the integration tests
(tests/api/support/webhook_receiver.rs).

Serves HTTP/1.1 on 127.0.0.1 only, on a port the kernel picks, and writes that port to the file
named by --port-file (whole: written beside it, then renamed) once it accepts connections. Every
delivery is checked with the Standard Webhooks reference library (PyPI `standardwebhooks`), not
with code of ours, so that a signature the service gets wrong fails the tests.

  POST /hooks/<name>                a delivery for endpoint <name> (any method is recorded, so a
                                    redirect followed as a GET shows too); answered as the
                                    endpoint's behaviour says
  PUT  /_control/endpoints/<name>   {"secrets": ["whsec_...", ...], "behaviour": "ok"}, each
                                    optional, replaces what it gives; 204 (400 for a secret the
                                    library refuses or an unknown behaviour)
  GET  /_control/attempts[?endpoint=<name>]   every request to /hooks/, in arrival order
  GET  /_control/delivered[?endpoint=<name>]  webhook-ids of the verified deliveries answered 2xx
                                    with a whole response, in order, by endpoint
  GET  /_control/health             200 "ok"

Behaviours (an endpoint never configured has no secrets and behaves "ok"):
  ok                  200 "ok"
  status:<code>       that status (200-599) with a short body
  slow:<ms>           waits, then 200 "ok"
  hang                never answers (until the client leaves or the receiver stops)
  hang_after_headers  200 with Content-Length: 100, then never sends the body
  redirect:<url>      302 to <url>
  endless_body        200, chunked, 64 KiB chunks until the client leaves (at 1 GiB the
                      connection closes, the body unfinished)
  reset               closes the connection with a TCP reset (SO_LINGER 0), answering nothing
  fail_first:<n>      the first <n> requests since it was set answer 500, later ones 200 "ok"
  nul_body            200 "ok<NUL>done": a body with a NUL byte (UTF-16 text, a binary answer)

Needs standardwebhooks (deploy/local/setup installs it; WEBHOOK_PYTHON_BIN).
"""

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks

CHUNK = 64 * 1024
ENDLESS_LIMIT = 1024 * 1024 * 1024
# What a client that drops its connection makes the handler raise: no traceback for those.
GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class Endpoint:
    def __init__(self):
        self.secrets = []
        self.behaviour = "ok"
        # Requests since the behaviour was last set (fail_first counts these).
        self.requests = 0


class State:
    """What the handler threads share; every access holds the lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.endpoints = {}
        self.attempts = []
        self.delivered = {}
        # Set on shutdown: ends the waits of hang, hang_after_headers and slow.
        self.stopping = threading.Event()

    def endpoint(self, name):
        return self.endpoints.setdefault(name, Endpoint())


def parse_behaviour(behaviour):
    """(kind, argument) of a behaviour, or ValueError naming what is wrong."""
    if not isinstance(behaviour, str):
        raise ValueError("behaviour must be a string")
    kind, _, argument = behaviour.partition(":")
    if kind in ("ok", "hang", "hang_after_headers", "endless_body", "reset", "nul_body") \
            and not argument:
        return kind, None
    if kind == "status" and argument.isdigit() and 200 <= int(argument) <= 599:
        return kind, int(argument)
    if kind in ("slow", "fail_first") and argument.isdigit():
        return kind, int(argument)
    if kind == "redirect" and argument:
        return kind, argument
    raise ValueError(f"unknown behaviour {behaviour!r}")


def verified_with(secrets, body, headers):
    """Indexes of the secrets whose Webhook(secret).verify(body, headers) succeeds.

    Every exception counts as a failure: the library raises more than WebhookVerificationError
    on malformed input (ValueError for a signature entry without one comma, binascii.Error for
    bad base64, UnicodeDecodeError for a body that is not UTF-8).
    """
    matched = []
    for index, secret in enumerate(secrets):
        try:
            standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False)
        except Exception:
            continue
        matched.append(index)
    return matched


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes: with Nagle's algorithm on, the second waits
    # for the client's delayed ACK of the first (40 ms), which would cap one endpoint at about
    # twenty deliveries a second and measure the receiver instead of the service.
    disable_nagle_algorithm = True

    def version_string(self):
        return "webhook-receiver"

    def log_message(self, format, *args):
        pass

    @property
    def state(self):
        return self.server.state

    def handle(self):
        try:
            super().handle()
        except GONE:
            self.close_connection = True

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/hooks/"):
            self.delivery(urllib.parse.unquote(url.path[len("/hooks/"):]))
        elif self.command == "PUT" and url.path.startswith("/_control/endpoints/"):
            self.configure(urllib.parse.unquote(url.path[len("/_control/endpoints/"):]))
        elif self.command == "GET" and url.path == "/_control/attempts":
            endpoint = self.query(url, "endpoint")
            with self.state.lock:
                attempts = [a for a in self.state.attempts
                            if endpoint is None or a["endpoint"] == endpoint]
                body = json.dumps(attempts)
            self.answer(200, body, "application/json")
        elif self.command == "GET" and url.path == "/_control/delivered":
            endpoint = self.query(url, "endpoint")
            with self.state.lock:
                delivered = {name: list(ids) for name, ids in self.state.delivered.items()
                             if endpoint is None or name == endpoint}
                body = json.dumps(delivered)
            self.answer(200, body, "application/json")
        elif self.command == "GET" and url.path == "/_control/health":
            self.answer(200, "ok")
        else:
            self.read_body()
            self.answer(404, "no such path")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = dispatch

    @staticmethod
    def query(url, name):
        values = urllib.parse.parse_qs(url.query).get(name)
        return values[0] if values else None

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def answer(self, status, body=None, content_type="text/plain; charset=utf-8", extra=()):
        """A whole response; True once it is written."""
        data = b"" if body is None else body.encode()
        self.send_response(status)
        for name, value in extra:
            self.send_header(name, value)
        if status not in (204, 304):
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status not in (204, 304):
            self.wfile.write(data)
        self.wfile.flush()
        return True

    def configure(self, name):
        try:
            config = json.loads(self.read_body() or b"{}")
            if not isinstance(config, dict):
                raise ValueError("the body must be a JSON object")
            secrets = config.get("secrets")
            if secrets is not None:
                if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
                    raise ValueError("secrets must be a list of strings")
                for secret in secrets:
                    standardwebhooks.Webhook(secret)
            behaviour = config.get("behaviour")
            if behaviour is not None:
                parse_behaviour(behaviour)
        except Exception as error:  # told back to the test
            self.answer(400, f"{type(error).__name__}: {error}")
            return
        with self.state.lock:
            endpoint = self.state.endpoint(name)
            if secrets is not None:
                endpoint.secrets = list(secrets)
            if behaviour is not None:
                endpoint.behaviour = behaviour
                endpoint.requests = 0
        self.answer(204)

    def delivery(self, name):
        body = self.read_body()
        headers = {key.lower(): value for key, value in self.headers.items()}
        with self.state.lock:
            endpoint = self.state.endpoint(name)
            secrets = list(endpoint.secrets)
            behaviour = endpoint.behaviour
            endpoint.requests += 1
            requests = endpoint.requests
        matched = verified_with(secrets, body, headers)
        kind, argument = parse_behaviour(behaviour)
        if kind == "fail_first":
            status = 500 if requests <= argument else 200
        elif kind == "status":
            status = argument
        elif kind == "redirect":
            status = 302
        elif kind in ("hang", "reset"):
            status = None
        else:
            status = 200
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        with self.state.lock:
            self.state.attempts.append({
                "endpoint": name,
                "method": self.command,
                "webhook_id": headers.get("webhook-id"),
                "webhook_timestamp": headers.get("webhook-timestamp"),
                "webhook_signature": headers.get("webhook-signature"),
                "verified_with": matched,
                "payload": payload,
                "body": body.decode("utf-8", errors="replace"),
                "headers": headers,
                "received_at": time.time(),
                "behaviour": behaviour,
                "status": status,
            })
        whole = self.behave(kind, argument, status)
        if whole and matched and 200 <= status < 300:
            with self.state.lock:
                self.state.delivered.setdefault(name, []).append(headers.get("webhook-id"))

    def behave(self, kind, argument, status):
        """Answers as the behaviour says; True when a whole response was written."""
        if kind == "slow":
            if self.state.stopping.wait(argument / 1000):
                return False
            return self.answer(200, "ok")
        if kind == "hang":
            self.wait_for_client_to_leave()
            return False
        if kind == "hang_after_headers":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.flush()
            self.wait_for_client_to_leave()
            return False
        if kind == "redirect":
            return self.answer(302, "redirected", extra=[("Location", argument)])
        if kind == "endless_body":
            self.endless_body()
            return False
        if kind == "reset":
            self.reset()
            return False
        if kind == "nul_body":
            return self.answer(200, "ok\x00done")
        if status == 200:
            return self.answer(200, "ok")
        return self.answer(status, f"status {status}")

    def wait_for_client_to_leave(self):
        """Holds the connection until the client closes it or the receiver stops."""
        self.close_connection = True
        while not self.state.stopping.wait(0.1):
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return
                except OSError:
                    return

    def endless_body(self):
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        # A client that stops reading without closing would otherwise hold this thread forever.
        self.connection.settimeout(30)
        chunk = b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n"
        sent = 0
        while sent < ENDLESS_LIMIT and not self.state.stopping.is_set():
            self.wfile.write(chunk)
            sent += CHUNK
        # No last chunk: at the limit the connection closes with the body unfinished, so a
        # client never sees a whole response.

    def reset(self):
        """Closes at once with SO_LINGER 0, so the kernel sends RST rather than FIN."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The socket really closes once the buffered reader is closed too (finish() does it).
        self.connection.close()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Many deliveries may arrive at once (the default backlog is 5).
    request_queue_size = 128

    def __init__(self, address, state):
        super().__init__(address, Handler)
        self.state = state

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, GONE) or self.state.stopping.is_set():
            return
        print(f"webhook receiver: {type(error).__name__}: {error}", file=sys.stderr)


def write_port(path, port):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(f"{port}\n")
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True, help="where to write the port chosen")
    args = parser.parse_args()
    state = State()
    server = Server(("127.0.0.1", 0), state)

    def stop(_signum, _frame):
        state.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Listening already (the constructor binds and listens): a reader may connect at once.
    write_port(args.port_file, server.server_address[1])
    server.serve_forever(poll_interval=0.1)
    server.server_close()


if __name__ == "__main__":
    main()
