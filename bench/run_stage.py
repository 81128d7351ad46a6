"""One stage of `python -m bench.run`: measured, its figures put in the results and printed."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
from typing import Any

from bench import pure, stages, worker_stages
from bench.collector import collector_eps
from bench.common import BROKER, PARTITIONS, REPO, RESULTS, Names, create_topic, log
from bench.freshness import freshness, warm_up
from bench.generator import Generator, LoadShape
from bench.loadgen import ProduceStats, produce
from bench.profiling import print_summary, summarize

PROFILE_FILE = RESULTS / "profile-merge.speedscope.json"


def stage_timeout(args: argparse.Namespace, records: int) -> float:
    """Generous: the worker may handle only a few hundred records a second here."""
    return args.timeout or 300 + records / 100


def fill_topic(topic: str, shape: LoadShape, events: int) -> ProduceStats:
    """A fresh topic holding `events` generated with `shape`; what `produce` reports."""
    create_topic(topic)
    return asyncio.run(produce(BROKER, topic, Generator(shape), events=events, progress=True))


def run_stage(
    stage: str,
    args: argparse.Namespace,
    names: Names,
    topic: str,
    results: dict[str, Any],
    *,
    command: str,
    timeout: float,
    sample: int,
) -> dict[str, Any]:
    """Measure `stage`: its figures go into `results` and are printed; returns its details."""
    if stage == "merge":
        detail = worker_stages.merge_eps(names, topic, args.events, sinks=False, timeout=timeout)
        results["merge_eps"] = detail["events_per_s"]
        print(f"merge_eps: {detail['events_per_s']:,.0f} events/s (sinks off)")
    elif stage == "floor":
        detail = stages.floor_eps(topic, args.events, PARTITIONS)
        results["floor_eps"] = detail["events_per_s"]
        print(f"floor_eps: {detail['events_per_s']:,.0f} events/s")
    elif stage == "quix":
        detail = stages.quix_eps(names, topic, args.events, timeout)
        results["quix_eps"] = detail["events_per_s"]
        print(f"quix_eps: {detail['events_per_s']:,.0f} events/s")
    elif stage == "pure":
        detail = pure.pure_eps(args.events, args.seed)
        results["pure_eps"] = detail["events_per_s"]
        print(f"pure_eps: {detail['events_per_s']:,.0f} events/s (merge code, no framework)")
    elif stage == "request-length":
        detail = pure.request_length(args.seed)
        for position, row in detail["positions"].items():
            print(
                f"request-length event {int(position):,}: {row['flushed us']} us"
                f" (kept decoded, encoded once after the event), {row['kept us']} us (kept"
                f" decoded), {row['round trip us']} us (decoded and encoded per event),"
                f" state {row['state_bytes']:,} bytes"
            )
        print(
            f"request-length 1,000th / 1st: {detail['flushed last/first']} (flushed),"
            f" {detail['kept last/first']} (kept), {detail['round trip last/first']}"
            " (round trip)"
        )
    elif stage == "faust-floor":
        detail = worker_stages.faust_floor_eps(names, topic, sample, timeout)
        results["faust_floor_eps"] = detail["events_per_s"]
        print(f"faust_floor_eps: {detail['events_per_s']:,.0f} events/s (parse and count)")
    elif stage == "faust-floor-write":
        detail = worker_stages.faust_floor_eps(names, topic, sample, timeout, writes=1)
        results["faust_floor_write_eps"] = detail["events_per_s"]
        print(
            f"faust_floor_write_eps: {detail['events_per_s']:,.0f} events/s"
            " (parse, count, one table write)"
        )
    elif stage == "merge-sinks":
        # Its own topic of the first `sample` events: while `requests` has a
        # backlog the index agent gets nothing, so a worker over the full topic
        # would index the sample only after merging everything.
        sinks_topic = topic
        if sample < args.events:
            sinks_topic = names.topic("sample-requests")
            log(f"merge-sinks: producing the first {sample:,} events to {sinks_topic}")
            fill_topic(sinks_topic, LoadShape(seed=args.seed), sample)
        detail = worker_stages.merge_eps(
            names, sinks_topic, sample, sinks=True, timeout=stage_timeout(args, sample)
        )
        results["merge_sinks_on_eps"] = detail["events_per_s"]
        print(f"merge_sinks_on_eps: {detail['events_per_s']:,.0f} events/s (every agent)")
    elif stage == "freshness":
        warm_up(names, args)
        rows = []
        for rate in args.rate_list:
            row = freshness(names, rate, args)
            rows.append(row)
            print(
                f"freshness {rate:,}/s: p50 {row['p50_s']} s, p95 {row['p95_s']} s,"
                f" p99 {row['p99_s']} s, max {row['max_s']} s,"
                f" sustained: {row['sustained']}"
            )
        results["freshness"] = rows
        detail = {"rates": args.rate_list}
    elif stage == "collector":
        detail = collector_eps(names, min(args.duration, 30))
        results["collector_eps"] = detail["events_per_s"]
        print(f"collector_eps: {detail['events_per_s']:,} events/s over HTTP")
    elif stage == "rss":
        rss_topic = names.topic("rss-requests")
        log(f"rss: producing {args.ids:,} events, one per id")
        fill_topic(
            rss_topic,
            LoadShape(seed=args.seed, max_events_per_id=1, id_prefix="m"),
            args.ids,
        )
        detail = worker_stages.rss_mb(
            names,
            rss_topic,
            args.ids,
            sinks=args.rss_sinks,
            timeout=stage_timeout(args, args.ids),
        )
        results["rss_mb"] = detail["rss_mb"]
        results["recovery_s"] = detail["recovery_s"]
        results["rebuild_s"] = detail["rebuild_s"]
        results["recovery_runs"] = [
            {
                "worker_commit": worker_commit(),
                "ids": args.ids,
                "recovery_s": detail["recovery_s"],
                "rebuild_s": detail["rebuild_s"],
                "command": command,
            }
        ]
        print(f"rss_mb: {detail['rss_mb']:,.0f} MB with {args.ids:,} ids")
        print(f"recovery_s: {detail['recovery_s']:,.1f} s (kill -9 to /health 200)")
        print(f"rebuild_s: {detail['rebuild_s']:,.1f} s (no local stores to /health 200)")
    elif stage == "profile":
        detail = worker_stages.merge_eps(
            names,
            topic,
            sample,
            sinks=False,
            timeout=timeout,
            profile=PROFILE_FILE,
            stage="profile",
        )
        summary = summarize(PROFILE_FILE)
        detail["summary"] = summary
        log("profile: cProfile of leadedge's merge functions in a plain loop")
        detail["pure_cprofile"] = pure.pure_profile(min(args.events, 100_000), args.seed)
        detail["file"] = str(PROFILE_FILE.relative_to(RESULTS.parent.parent))
        print_summary(summary)
    return detail


def worker_commit() -> str:
    """The commit the workers run (`BENCH_WORKER_REPO`'s when set), short, `+` if changed."""
    repo = os.environ.get("BENCH_WORKER_REPO") or str(REPO)
    head = subprocess.run(
        ["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head}+" if dirty else head or "unknown"
