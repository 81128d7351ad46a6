"""`leadedge stack`: the local Kafka, Elasticsearch and S3 API (up, down, status, start, stop)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from leadedge.config import get_settings
from leadedge.exceptions import LeadEdgeError
from leadedge.stack import COMPONENT_NAMES, OPTIONAL_NAMES, ComponentStatus, Stack

COMPONENTS = [*COMPONENT_NAMES, *OPTIONAL_NAMES]


def fail(exc: LeadEdgeError) -> None:
    """Say what went wrong and exit 1 (every command's error ending)."""
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(1)


@click.group()
def stack() -> None:
    """A local Kafka, Elasticsearch and S3 API on 127.0.0.1, without Docker."""


def _stack() -> Stack:
    settings = get_settings()
    return Stack(Path(settings.stack_dir), Path(settings.stack_cache), echo=click.echo)


@stack.command("up")
@click.option(
    "--secure",
    is_flag=True,
    help="Also start Elasticsearch with security on (https://127.0.0.1:9201, a login).",
)
def stack_up(secure: bool) -> None:
    """Install (downloads cached) and start every component, waiting until each is ready."""
    try:
        _stack().up(secure=secure)
    except LeadEdgeError as exc:
        fail(exc)
    _print_status()


@stack.command("down")
def stack_down() -> None:
    """Stop every component this stack started."""
    try:
        _stack().down()
    except LeadEdgeError as exc:
        fail(exc)


@stack.command("status")
@click.option("--check", is_flag=True, help="Exit 1 unless every component is up.")
def stack_status(check: bool) -> None:
    """Show each component, its address, and whether it is up."""
    statuses = _print_status()
    if check and not all(item.ready for item in statuses):
        sys.exit(1)


@stack.command("start")
@click.argument("name", type=click.Choice(COMPONENTS))
def stack_start(name: str) -> None:
    """Start one component (after `stop`)."""
    _on_component("start", name)


@stack.command("stop")
@click.argument("name", type=click.Choice(COMPONENTS))
def stack_stop(name: str) -> None:
    """Stop one component, e.g. to see how the worker rides out an outage."""
    _on_component("stop", name)


def _on_component(operation: str, name: str) -> None:
    try:
        getattr(_stack(), operation)(name)
    except LeadEdgeError as exc:
        fail(exc)


def _print_status() -> list[ComponentStatus]:
    statuses = _stack().status()
    for item in statuses:
        state = "up" if item.ready else ("starting" if item.running else "down")
        colour = {"up": "green", "starting": "yellow", "down": "red"}[state]
        pid = f"pid {item.pid}" if item.pid else ""
        click.echo(
            f"{item.name:<20} {item.address:<18} " + click.style(f"{state:<9}", fg=colour) + pid
        )
    return statuses
