"""`leadedge kibana import`: load the saved objects under `kibana/` into a Kibana."""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from leadedge.exceptions import KibanaError

DEFAULT_FILE = Path("kibana/leadedge.ndjson")
# Kibana answers 503 while it starts, and refuses connections before that.
RETRY_STATUS = frozenset({502, 503, 504})


def multipart(path: Path, boundary: str) -> bytes:
    """A multipart/form-data body with the file as the field `file`, as Kibana expects."""
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    ).encode()
    return head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()


def import_saved_objects(
    url: str,
    path: Path = DEFAULT_FILE,
    *,
    wait_s: float = 0.0,
    api_key: str | None = None,
    timeout_s: float = 60.0,
) -> dict[str, Any]:
    """POST the NDJSON to `{url}/api/saved_objects/_import?overwrite=true`.

    Objects with the same ids are replaced, so importing again is harmless. While Kibana
    is starting (connection refused, 502/503/504) the call is retried for up to `wait_s`
    seconds. Returns Kibana's answer; raises `KibanaError` when any object failed.
    """
    if not path.is_file():
        msg = f"{path} does not exist: run from the repository root or pass --file"
        raise KibanaError(msg)
    boundary = f"leadedge-{secrets.token_hex(12)}"
    body = multipart(path, boundary)
    headers = {
        "kbn-xsrf": "true",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    if api_key:
        headers["Authorization"] = f"ApiKey {api_key}"
    target = f"{url.rstrip('/')}/api/saved_objects/_import?overwrite=true"
    deadline = time.monotonic() + wait_s
    while True:
        request = urllib.request.Request(target, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as answer:
                result: dict[str, Any] = orjson.loads(answer.read())
                break
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:2000]
            if exc.code not in RETRY_STATUS or time.monotonic() >= deadline:
                msg = f"Kibana at {url} answered {exc.code}: {detail}"
                raise KibanaError(msg) from None
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() >= deadline:
                msg = f"Kibana at {url} is not reachable: {exc}"
                raise KibanaError(msg) from None
        time.sleep(2.0)
    if not result.get("success", False):
        problems = "; ".join(
            f"{error.get('type')} {error.get('id')}: {error.get('error', {}).get('type')}"
            for error in result.get("errors", [])
        )
        msg = f"Kibana imported {result.get('successCount', 0)} objects and refused: {problems}"
        raise KibanaError(msg)
    return result
