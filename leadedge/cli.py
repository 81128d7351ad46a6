"""`leadedge`: the local stack, sending events, and a demo run."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import BinaryIO

import click
import orjson

from leadedge.config import Settings, bootstrap_servers, get_settings
from leadedge.demo import EXAMPLE, trickle
from leadedge.exceptions import LeadEdgeError
from leadedge.producer import EventProducer, keyed
from leadedge.stack import ComponentStatus, Stack


def _fail(exc: LeadEdgeError) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """Real-time merge of request-history events into enriched merged requests."""


@main.group()
def stack() -> None:
    """A local Kafka, Elasticsearch and S3 API on 127.0.0.1, without Docker."""


def _stack() -> Stack:
    settings = get_settings()
    return Stack(Path(settings.stack_dir), Path(settings.stack_cache), echo=click.echo)


@stack.command("up")
def stack_up() -> None:
    """Install (downloads cached) and start every component, waiting until each is ready."""
    try:
        _stack().up()
    except LeadEdgeError as exc:
        _fail(exc)
    _print_status()


@stack.command("down")
def stack_down() -> None:
    """Stop every component this stack started."""
    try:
        _stack().down()
    except LeadEdgeError as exc:
        _fail(exc)


@stack.command("status")
@click.option("--check", is_flag=True, help="Exit 1 unless every component is up.")
def stack_status(check: bool) -> None:
    """Show each component, its address, and whether it is up."""
    statuses = _print_status()
    if check and not all(item.ready for item in statuses):
        sys.exit(1)


@stack.command("start")
@click.argument("name", type=click.Choice(["kafka", "elasticsearch", "s3"]))
def stack_start(name: str) -> None:
    """Start one component (after `stop`)."""
    try:
        _stack().start(name)
    except LeadEdgeError as exc:
        _fail(exc)


@stack.command("stop")
@click.argument("name", type=click.Choice(["kafka", "elasticsearch", "s3"]))
def stack_stop(name: str) -> None:
    """Stop one component, e.g. to see how the worker rides out an outage."""
    try:
        _stack().stop(name)
    except LeadEdgeError as exc:
        _fail(exc)


def _print_status() -> list[ComponentStatus]:
    statuses = _stack().status()
    for item in statuses:
        state = "up" if item.ready else ("starting" if item.running else "down")
        colour = {"up": "green", "starting": "yellow", "down": "red"}[state]
        pid = f"pid {item.pid}" if item.pid else ""
        click.echo(
            f"{item.name:<14} {item.address:<18} " + click.style(f"{state:<9}", fg=colour) + pid
        )
    return statuses


@main.command()
@click.argument("source", type=click.File("rb"), default="-")
def send(source: BinaryIO) -> None:
    """Produce NDJSON events from SOURCE (a file, or - for stdin) to the requests topic."""
    settings = get_settings()

    async def produce() -> int:
        producer = EventProducer(bootstrap_servers(settings.broker), settings.requests_topic)
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


@main.command()
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
    producer = EventProducer(bootstrap_servers(settings.broker), settings.requests_topic)
    await producer.start()
    try:
        for event in EXAMPLE:
            await producer.send(event["id"].encode(), orjson.dumps(event))
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
