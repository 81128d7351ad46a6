"""What a worker checks before it starts: S3 credentials exist somewhere."""

from __future__ import annotations

import pytest

from leadedge.config import Settings
from leadedge.exceptions import ConfigError


def test_no_s3_keys_and_none_in_boto3s_chain_stops_the_worker_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from leadedge.engine.app import check_s3_credentials

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp_path}/none")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    with pytest.raises(ConfigError, match="LEADEDGE_S3_ACCESS_KEY_ID"):
        check_s3_credentials(Settings())
    # Found by boto3 itself (here its variables): fine.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-chain")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    check_s3_credentials(Settings())
    # Set for leadedge: boto3's chain is not consulted.
    check_s3_credentials(Settings(s3_access_key_id="id", s3_secret_access_key="s"))  # type: ignore[arg-type]
