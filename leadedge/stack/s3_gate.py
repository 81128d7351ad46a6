"""The local S3's server script: moto behind a write gate.

The gate refuses writes (503, which S3 clients retry) from the server's start until the
stack has restored its snapshot, and again from the moment a save begins (see
`leadedge.stack.s3`). The script is written to `s3/server.py` and run by the stack's
Python; it imports moto only, not leadedge.
"""

from __future__ import annotations

import string

#: Path of the write gate's control endpoint (`_` is invalid in bucket names).
GATE_PATH = "/_leadedge/state"
#: Requests with this header pass the gate (our own restore).
ADMIN_HEADER = "X-Leadedge-Admin"
#: Seconds the gate waits for writes in progress when it closes.
DRAIN_S = 30.0

# moto's server (as `python -m moto.server` runs it) behind a write gate. Written to
# `s3/server.py` and run by the stack's Python; it imports moto only, not leadedge.
SERVER_SCRIPT = string.Template('''\
"""moto's S3 server behind a write gate; written by leadedge.stack.s3 on each start."""

import json
import os
import signal
import sys
import threading
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

GATE_PATH = $gate_path
ADMIN_ENVIRON = $admin_environ
DRAIN_S = $drain_s
READS = frozenset({"GET", "HEAD", "OPTIONS"})
BUSY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\\n<Error><Code>ServiceUnavailable</Code>'
    b"<Message>the local S3 is restoring or saving its objects; retry</Message></Error>"
)
DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied (the local S3's gate is set to deny writes)</Message></Error>"
)


class WriteGate:
    """Writes pass only in state "open" (or with the admin header).

    States: "restoring" from the start until leadedge opens the gate, "open", and
    "closed" once a save begins. Closing waits until writes in progress are done.
    "denied" answers writes 403 AccessDenied, as S3 does for a missing permission: the
    tests use it for a permanent error.
    """

    def __init__(self, app):
        self.app = app
        self.cond = threading.Condition()
        self.state = "restoring"
        self.in_flight = 0

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if environ.get("PATH_INFO") == GATE_PATH:
            return self.control(method, environ, start_response)
        if method in READS or environ.get(ADMIN_ENVIRON) == "1":
            return self.app(environ, start_response)
        with self.cond:
            if self.state == "denied":
                start_response(
                    "403 Forbidden",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(DENIED)))],
                )
                return [DENIED]
            if self.state != "open":
                start_response(
                    "503 Service Unavailable",
                    [("Content-Type", "application/xml"), ("Retry-After", "1"),
                     ("Content-Length", str(len(BUSY)))],
                )
                return [BUSY]
            self.in_flight += 1
        try:
            # moto handles the request here; the response body is already computed.
            return self.app(environ, start_response)
        finally:
            with self.cond:
                self.in_flight -= 1
                self.cond.notify_all()

    def control(self, method, environ, start_response):
        with self.cond:
            if method == "POST":
                to = parse_qs(environ.get("QUERY_STRING", "")).get("to", [""])[0]
                if to not in ("open", "closed", "denied"):
                    start_response("400 Bad Request", [("Content-Length", "0")])
                    return [b""]
                self.state = to
                if to == "closed":
                    self.cond.wait_for(lambda: self.in_flight == 0, DRAIN_S)
            body = json.dumps({"state": self.state, "in_flight": self.in_flight}).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    run_simple(
        host, port, WriteGate(app), threaded=True, request_handler=MotoRequestHandler
    )


if __name__ == "__main__":
    main()
''').substitute(
    gate_path=repr(GATE_PATH),
    admin_environ=repr("HTTP_" + ADMIN_HEADER.upper().replace("-", "_")),
    drain_s=repr(DRAIN_S),
)
