"""An S3 API on 127.0.0.1:9000, served by moto."""

from __future__ import annotations

import importlib.util
import sys
import urllib.error
import urllib.request

from leadedge.exceptions import StackError
from leadedge.stack.base import Component
from leadedge.stack.process import LaunchSpec

BUCKET = "leadedge"
ACCESS_KEY_ID = "leadedge"
SECRET_ACCESS_KEY = "leadedge-secret"
REGION = "us-east-1"


class S3(Component):
    """moto's server with the bucket `leadedge`.

    moto keeps everything in memory: stopping it loses every object. Each start
    (and each `up`) creates the bucket again, so it always exists while running.
    """

    name = "s3"
    port = 9000
    ready_timeout = 60.0
    stop_timeout = 10.0

    @property
    def endpoint(self) -> str:
        """URL of the S3 API."""
        return f"http://{self.address}"

    def prepare(self) -> LaunchSpec:
        """Check moto's server is installed and say how to run it."""
        if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
            msg = "s3: moto's server is not installed: pip install 'leadedge[stack]'"
            raise StackError(msg)
        self.home.mkdir(parents=True, exist_ok=True)
        env = self.base_env()
        env["PYTHONUNBUFFERED"] = "1"
        return LaunchSpec(
            argv=[sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=self.home,
            env=env,
            marker="moto.server",
        )

    def is_ready(self) -> bool:
        """Probe whether the server answers HTTP (any status)."""
        try:
            with urllib.request.urlopen(f"{self.endpoint}/", timeout=3):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def on_ready(self) -> None:
        """Create the bucket unless it exists."""
        import boto3  # slow to import, needed only here
        from botocore.exceptions import ClientError

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )
        try:
            client.create_bucket(Bucket=BUCKET)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                msg = f"s3: could not create bucket {BUCKET!r}: {exc}"
                raise StackError(msg) from exc
