"""`leadedge`: the local stack, sending events, and a demo run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson

from leadedge.clients.elasticsearch import ElasticsearchConnection
from leadedge.clients.kafka import KafkaConnection
from leadedge.clients.producer import EventProducer, keyed
from leadedge.config import Settings, get_settings
from leadedge.exceptions import LeadEdgeError
from leadedge.stack.s3 import local_s3_environment
from leadedge.tools.cli_keys import keys
from leadedge.tools.cli_stack import fail as _fail
from leadedge.tools.cli_stack import stack
from leadedge.tools.demo import EXAMPLE, trickle


@click.group()
def cli() -> None:
    """Real-time merge of request-history events into enriched merged requests."""


@cli.command()
@click.argument("source", type=click.File("rb"), default="-")
def send(source: BinaryIO) -> None:
    """Produce NDJSON events from SOURCE (a file, or - for stdin) to the requests topic."""
    settings = get_settings()

    async def produce() -> int:
        producer = EventProducer(KafkaConnection.from_settings(settings), settings.requests_topic)
        await producer.start()
        count = 0
        try:
            with click.progressbar(keyed(source), label="sending", show_pos=True) as records:
                for key, value in records:
                    await producer.send(key, value)
                    count += 1
            await producer.flush()
        finally:
            await producer.stop()
        return count

    sent = asyncio.run(produce())
    click.echo(f"sent {sent} events to {settings.requests_topic}")


@cli.command()
@click.option("--seconds", type=float, default=None, help="Stop after this long (default: Ctrl-C).")
@click.option(
    "--rate", type=float, default=2.0, show_default=True, help="Sample events per second."
)
def demo(seconds: float | None, rate: float) -> None:
    """Start a worker, send DESIGN's example and a trickle of sample events, print URLs."""
    settings = get_settings()
    stack_dir = Path(settings.stack_dir)
    log_path = stack_dir / "logs" / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    faust_bin = Path(sys.executable).with_name("faust")
    with log_path.open("ab") as log_file:
        worker = subprocess.Popen(
            [
                str(faust_bin),
                "--datadir",
                str(stack_dir / "worker-data"),
                "-A",
                "leadedge",
                "worker",
                "-l",
                "info",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # The local stack's S3 keys, unless others are set.
            env={**local_s3_environment(), **os.environ},
        )
    base = f"http://127.0.0.1:{settings.web_port}"
    try:
        click.echo(f"worker started (pid {worker.pid}, log {log_path}); waiting for {base}/health")
        _wait_for_worker(base, worker, log_path)
        asyncio.run(_send_samples(settings, seconds, rate, base))
    except KeyboardInterrupt:
        pass
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        click.echo("worker stopped; the stack keeps running (`leadedge stack down` stops it)")


def _wait_for_worker(base: str, worker: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-20:])
            _fail(LeadEdgeError(f"the worker exited with code {worker.returncode}:\n{tail}"))
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    _fail(LeadEdgeError(f"the worker did not answer on {base}/health within 180s; see {log_path}"))


async def _send_samples(settings: Settings, seconds: float | None, rate: float, base: str) -> None:
    producer = EventProducer(KafkaConnection.from_settings(settings), settings.requests_topic)
    await producer.start()
    try:
        for number, event in enumerate(EXAMPLE, start=1):
            # Event ids make a second `make run` count the example once, not twice.
            resendable = {**event, "event_id": f"design-example-{number}"}
            await producer.send(event["id"].encode(), orjson.dumps(resendable))
        await producer.flush()
        click.echo("sent DESIGN's three-event example for abc123. Open:")
        click.echo(f"  merged request:  {base}/requests/abc123")
        click.echo(f"  Elasticsearch:   {settings.es_url}/{settings.es_alias}/_doc/abc123")
        search = f"{settings.es_url}/{settings.es_alias}/_search?q=domain:somewhere.net"
        click.echo(f"  search:          {search}")
        click.echo(f"  a sample id:     {base}/requests/demo-0001")
        click.echo(f"now sending {rate:g} sample events/s (Ctrl-C to stop)")
        deadline = time.monotonic() + seconds if seconds is not None else None
        for event in trickle():
            if deadline is not None and time.monotonic() >= deadline:
                break
            await producer.send(event["id"].encode(), orjson.dumps(event))
            await asyncio.sleep(1 / rate)
    finally:
        await producer.stop()


def _epoch_ms(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from leadedge.tools.replay import parse_time

    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


@cli.command("replay")
@click.option(
    "--from",
    "start_ms",
    required=True,
    metavar="TIME",
    callback=_epoch_ms,
    help="Start of the range, inclusive: RFC 3339 (UTC when no offset) or epoch ms.",
)
@click.option(
    "--to",
    "end_ms",
    required=True,
    metavar="TIME",
    callback=_epoch_ms,
    help="End of the range, exclusive: RFC 3339 (UTC when no offset) or epoch ms.",
)
@click.option("--topic", default=None, help="Topic to produce to [default: the requests topic].")
@click.option(
    "--source-topic",
    default=None,
    help="Archived topic to read [default: the requests topic].",
)
@click.option("--dry-run", is_flag=True, help="Read and count, produce nothing.")
def replay_command(
    start_ms: int, end_ms: int, topic: str | None, source_topic: str | None, dry_run: bool
) -> None:
    """Re-produce archived raw events whose record time is in [--from, --to) from S3.

    Each event keeps its key, value and timestamp, in offset order within each source
    partition. Only the archive's hour partitions that overlap the range are listed.
    """
    from leadedge.tools.replay import replay, s3_client

    settings = get_settings()
    source = source_topic or settings.requests_topic
    target = topic or settings.requests_topic
    try:
        summary = asyncio.run(
            replay(
                s3=s3_client(settings),
                bucket=settings.s3_bucket,
                prefix=settings.s3_prefix,
                source_topic=source,
                start_ms=start_ms,
                end_ms=end_ms,
                broker=KafkaConnection.from_settings(settings),
                target_topic=target,
                dry_run=dry_run,
                progress=_progress_bar,
            )
        )
    except LeadEdgeError as exc:
        _fail(exc)
    where = f"s3://{settings.s3_bucket}/{settings.s3_prefix.strip('/')}/topic={source}/"
    click.echo(
        f"read {summary.objects} objects ({summary.lines} lines) from {where} "
        f"over {summary.hours} hour partitions"
    )
    verb = "would re-produce" if dry_run else "re-produced"
    click.echo(
        f"{verb} {summary.replayed} events to {target} "
        f"({summary.out_of_range} lines outside the range, "
        f"{summary.duplicates} duplicate offsets skipped)"
    )
    if summary.ignored_objects:
        click.secho(
            f"ignored {summary.ignored_objects} objects not named like archive objects",
            fg="yellow",
        )
    if summary.undecodable:
        what = "offsets archived as undecodable (their dead letters say why)"
        click.secho(f"skipped {summary.undecodable} {what}", fg="yellow")


def _progress_bar(label: str, total: int) -> AbstractContextManager[Any]:
    """A progress bar on the terminal, for replay and reindex."""
    return click.progressbar(length=total, label=label, show_pos=True)


@cli.command("reindex")
@click.option("--alias", default=None, help="Alias to rebuild [default: LEADEDGE_ES_ALIAS].")
@click.option("--keep-old", is_flag=True, help="Keep the old indices after the switch.")
@click.option(
    "--allow-fewer",
    is_flag=True,
    help="Switch even if the new index holds fewer documents than the alias.",
)
def reindex_command(alias: str | None, keep_old: bool, allow_fewer: bool) -> None:
    """Rebuild the Elasticsearch index from the merged-requests topic and switch the alias.

    Writes a new index `{alias}-{YYYYmmddHHMMSS}` from the current index template, then
    moves the alias onto it in one atomic step and deletes the old index. Refuses to
    switch when the new index would hold fewer documents than the alias does.
    """
    from leadedge.sinks.es_mapping import requests_index_from_settings
    from leadedge.tools.reindex import reindex

    settings = get_settings()
    try:
        summary = asyncio.run(
            reindex(
                es_url=ElasticsearchConnection.from_settings(settings),
                index=requests_index_from_settings(settings, alias),
                broker=KafkaConnection.from_settings(settings),
                merged_topic=settings.merged_topic,
                batch_size=settings.es_batch_size,
                keep_old=keep_old,
                allow_fewer=allow_fewer,
                progress=_progress_bar,
            )
        )
    except LeadEdgeError as exc:
        _fail(exc)
    click.echo(
        f"read {summary.records_read} records from {settings.merged_topic}; "
        f"indexed {summary.documents} merged requests into {summary.new_index}"
        + (f", then {summary.caught_up} that changed meanwhile" if summary.caught_up else "")
        + f" ({summary.new_documents} documents; the alias held {summary.old_documents})"
    )
    previous = ", ".join(summary.old_indices) or "nothing"
    click.echo(f"alias {summary.alias} now points to {summary.new_index} (was {previous})")
    if summary.deleted:
        click.echo(f"deleted {', '.join(summary.deleted)}")
    elif summary.old_indices:
        click.echo(f"kept {previous}")
    if summary.refused:
        click.secho(f"{len(summary.refused)} merged requests were not indexed:", fg="yellow")
        for request_id, reason in summary.refused[:10]:
            click.secho(f"  {request_id}: {reason}", fg="yellow")


@cli.group()
def kibana() -> None:
    """Kibana saved objects: the data views, charts and dashboard under kibana/."""


@kibana.command("import")
@click.option("--url", default="http://127.0.0.1:5601", show_default=True, help="Kibana's URL.")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The saved objects (NDJSON) [default: kibana/leadedge.ndjson].",
)
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to keep retrying while Kibana starts.",
)
@click.option("--api-key", default=None, help="A Kibana API key, when security is on.")
def kibana_import(url: str, path: Path | None, wait_s: float, api_key: str | None) -> None:
    """Import (and overwrite) the saved objects; importing again is harmless."""
    from leadedge.tools.kibana import DEFAULT_FILE, import_saved_objects
    from leadedge.tools.kibana_objects import DASHBOARD

    try:
        result = import_saved_objects(url, path or DEFAULT_FILE, wait_s=wait_s, api_key=api_key)
    except LeadEdgeError as exc:
        _fail(exc)
        return
    click.echo(f"imported {result.get('successCount', 0)} saved objects into {url}")
    click.echo(f"dashboard: {url.rstrip('/')}/app/dashboards#/view/{DASHBOARD}")


cli.add_command(keys)
cli.add_command(stack)


def main() -> None:
    """The `leadedge` command: a configuration problem is a message, not a traceback."""
    try:
        cli()
    except LeadEdgeError as exc:
        _fail(exc)
