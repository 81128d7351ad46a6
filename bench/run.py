"""Every benchmark in one command: `make bench` (`python -m bench.run`).

Stages, in order (`--only` / `--skip` pick some; the events topic is filled when a stage
needs it):

- merge: merge_eps, `faust -A bench.merge_only worker` (the product's worker, sinks off)
  over `--events` records already in a topic, until all are handled
- floor: floor_eps, a bare aiokafka consumer + orjson.loads over the same topic
- quix: quix_eps, the same merge on Quix Streams (bench/peers/quix_merge.py)
- pure: pure_eps, leadedge's merge functions in a plain loop (no Kafka, no framework)
- request-length: per-event cost of a request's 1st, 2nd, 100th, 999th and 1,000th event
  (the merge functions in a plain loop): does a long request cost more per event?
- faust-floor, faust-floor-write: a Faust agent that parses and counts (and writes a key)
- merge-sinks: the product's `faust -A leadedge worker` (every agent) over the first
  `--sample-events` events
- freshness: produce-to-searchable p50/p95/p99/max at each of `--rates` for `--duration` s
- rss: the merge worker's VmRSS once `--ids` distinct ids are in its table (`--rss-sinks`:
  the product's worker), then recovery_s: kill -9 to `/health` 200 over the same data
  directory, and rebuild_s: the same without the data directory (tables rebuilt from
  their changelogs)
- collector: `POST /requests` throughput
- profile: py-spy on the merge-only worker over `--sample-events` events

The Faust floors stop after `--sample-events` too: they measure a per-record cost.

Results go to bench/results/latest.json, then BENCHMARKS.md and bench/results/freshness.png
are rendered from it (`python -m bench.render`). Every topic, consumer group, alias and S3
prefix is fresh (`bench<8 hex>-…`) and deleted at the end, with every process started.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    BROKER,
    ES_URL,
    PARTITIONS,
    RESULTS,
    Names,
    delete_es,
    delete_s3,
    delete_topics,
    geoip_db,
    http_json,
    log,
)
from bench.generator import LoadShape, mean_events_per_id
from bench.measure import machine_info
from bench.run_stage import fill_topic, run_stage, stage_timeout
from leadedge.config import Settings

STAGES = (
    "merge",
    "floor",
    "quix",
    "pure",
    "request-length",
    "faust-floor",
    "faust-floor-write",
    "merge-sinks",
    "freshness",
    "rss",
    "collector",
    "profile",
)
NEEDS_EVENTS = {
    "merge",
    "floor",
    "quix",
    "faust-floor",
    "faust-floor-write",
    "merge-sinks",
    "profile",
}
NEEDS_ELASTICSEARCH = {"merge-sinks", "freshness", "rss"}
LATEST = RESULTS / "latest.json"

# The targets: reported, never asserted.
TARGETS = (
    ("merge_eps", ">=", 10_000, "merge worker alone (sinks off), events/s"),
    ("merge_sinks_on_eps", ">=", 6_000, "every agent on (`faust -A leadedge worker`), events/s"),
    ("merge_vs_quix", ">", 1.0, "merge_eps / quix_eps"),
    ("sinks_on_vs_quix", ">", 1.0, "every agent on / quix_eps"),
    ("freshness_p50_5000", "<=", 0.4, "freshness p50 at 5,000 events/s, s"),
    ("freshness_p99_5000", "<=", 1.0, "freshness p99 at 5,000 events/s, s"),
    ("merge_eps", ">=", 20_000, "merge worker alone, with the merge-code issue, events/s"),
    ("merge_vs_floor", ">=", 0.5, "merge_eps / floor_eps"),
    ("merge_vs_quix", ">=", 3.0, "merge_eps / quix_eps, with the merge-code issue"),
    ("pure_eps", ">=", 40_000, "merge code alone (pure_eps), events/s"),
    (
        "request_length_ratio",
        "<=",
        2.0,
        "cost of a request's 1,000th event / its 1st (states kept decoded and encoded once"
        " after each event, as the engine's flush does)",
    ),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the topic")
    parser.add_argument("--duration", type=float, default=60, help="seconds per freshness rate")
    parser.add_argument(
        "--rates",
        default="100,250,1000,2000,3000,4000,5000,10000",
        help="freshness rates, events/s (steps of 1,000 up to 5,000 find the highest"
        " sustained one)",
    )
    parser.add_argument(
        "--drain", type=float, default=60, help="seconds to wait for the last probes"
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=60,
        help="seconds of unmeasured load before the first freshness rate (0: none)",
    )
    parser.add_argument("--ids", type=int, default=1_000_000, help="distinct ids for rss")
    parser.add_argument(
        "--sample-events",
        type=int,
        default=100_000,
        help="events for the stages beyond the issue's figures (Faust floors, sinks on,"
        " profile): at a few hundred events/s the full topic takes hours",
    )
    parser.add_argument(
        "--rss-sinks",
        action="store_true",
        help="rss with every agent on (`faust -A leadedge worker`) instead of the merge"
        " worker: about 3 times slower",
    )
    parser.add_argument("--seed", type=int, default=LoadShape.seed)
    parser.add_argument("--only", help=f"comma-separated stages of {','.join(STAGES)}")
    parser.add_argument("--skip", help="comma-separated stages to leave out")
    parser.add_argument(
        "--timeout", type=float, help="per stage, seconds (default: from the sizes)"
    )
    parser.add_argument(
        "--faust-conf",
        help="experiment: JSON Faust settings for the merge-only worker, e.g."
        " '{\"producer_linger_ms\": 10}' (figures are then labelled as an experiment)",
    )
    parser.add_argument(
        "--no-render",
        action="store_true",
        help="an experiment: figures to bench/results/run-<time>.json, latest.json and"
        " BENCHMARKS.md left alone",
    )
    args = parser.parse_args(argv)
    chosen = set(args.only.split(",")) if args.only else set(STAGES)
    if args.skip:
        chosen -= set(args.skip.split(","))
    unknown = chosen - set(STAGES)
    if unknown:
        parser.error(f"unknown stages: {', '.join(sorted(unknown))}")
    args.stages = [stage for stage in STAGES if stage in chosen]
    args.rate_list = [int(rate) for rate in args.rates.split(",") if rate]
    return args


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for package in ("faust-streaming", "aiokafka", "quixstreams", "confluent-kafka", "orjson"):
        with contextlib.suppress(Exception):
            found[package] = version(package)
    with contextlib.suppress(Exception):
        found["elasticsearch"] = http_json("GET", ES_URL)["version"]["number"]
    return found


def elasticsearch_ready() -> str | None:
    """None when Elasticsearch answers as a healthy cluster, else why not."""
    try:
        health = http_json("GET", f"{ES_URL}/_cluster/health", timeout=10)
    except Exception as exc:
        return f"{ES_URL} does not answer: {exc!r}"
    if not isinstance(health, dict) or health.get("status") not in {"green", "yellow"}:
        return f"{ES_URL}/_cluster/health answered {health!r}"
    return None


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    merge = results.get("merge_eps")
    floor = results.get("floor_eps")
    quix = results.get("quix_eps")
    at_5000 = next((row for row in results.get("freshness", []) if row["rate"] == 5000), {})
    p99 = at_5000.get("p99_s")
    sinks_on = results.get("merge_sinks_on_eps")
    missing_p99 = any(
        row["rate"] == 5000 and row["p99_s"] is None for row in results.get("freshness", [])
    )
    values = {
        "merge_eps": merge,
        "merge_vs_floor": round(merge / floor, 3) if merge and floor else None,
        "merge_vs_quix": round(merge / quix, 3) if merge and quix else None,
        "freshness_p99_5000": p99,
        "freshness_p50_5000": at_5000.get("p50_s"),
        "merge_sinks_on_eps": sinks_on,
        "sinks_on_vs_quix": round(sinks_on / quix, 3) if sinks_on and quix else None,
        "pure_eps": results.get("pure_eps"),
        "request_length_ratio": results.get("details", {})
        .get("request-length", {})
        .get("flushed last/first"),
    }
    rows = []
    for name, op, goal, meaning in TARGETS:
        value = values[name]
        if value is None:
            reached = False if name.startswith("freshness_") and missing_p99 else None
        else:
            reached = {">=": value >= goal, ">": value > goal, "<=": value <= goal}[op]
        rows.append(
            {
                "name": name,
                "meaning": meaning,
                "target": f"{op} {goal:g}",
                "value": value,
                "reached": reached,
            }
        )
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = Names()
    command = " ".join(["python -m bench.run", *sys.argv[1:]])
    # Only this run's figures: a partial run (--only) is merged into the previous
    # results once it is over (`merged_into_previous`).
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "commands": [command],
        "args": {
            "events": args.events,
            "duration": args.duration,
            "rates": args.rate_list,
            "drain": args.drain,
            "warm_up": args.warm_up,
            "ids": args.ids,
            "sample_events": args.sample_events,
            "rss_sinks": args.rss_sinks,
            "seed": args.seed,
            "stages": args.stages,
            "faust_conf": args.faust_conf,
        },
        "machine": machine_info(),
        "versions": versions(),
        "setup": {
            "broker": BROKER,
            "partitions": PARTITIONS,
            "geoip_db": (geoip_db() or Path("none")).name,
            "worker_command": "faust --datadir DIR -A APP worker --web-port PORT -l info",
            # What the workers use: their environment holds only the bench's LEADEDGE_ values.
            "es_refresh_interval": Settings.model_fields["es_refresh_interval"].default,
        },
        "prefix": names.prefix,
    }
    results.setdefault("details", {})
    if args.faust_conf:
        import os

        os.environ["BENCH_FAUST_CONF"] = args.faust_conf
        results["experiment"] = f"merge-only worker with Faust settings {args.faust_conf}"
    log(f"bench {names.prefix}: stages {', '.join(args.stages)}")
    try:
        topic = names.topic("requests")
        if NEEDS_EVENTS & set(args.stages):
            shape = LoadShape(seed=args.seed)
            log(f"load: producing {args.events:,} events to {topic}")
            produced = fill_topic(topic, shape, args.events)
            results["load"] = {
                **produced.as_dict(),
                "shape": shape.__dict__,
                "mean_events_per_id_zipf": round(
                    mean_events_per_id(shape.zipf_s, shape.max_events_per_id), 2
                ),
                "avg_event_bytes": round(produced.bytes / max(produced.events, 1)),
            }
            print(f"load: {args.events:,} events produced at {produced.rate:,.0f}/s")
        timeout = stage_timeout(args, args.events)
        sample = min(args.sample_events, args.events)
        for stage in args.stages:
            started = time.monotonic()
            if stage in NEEDS_ELASTICSEARCH:
                problem = elasticsearch_ready()
                if problem is not None:
                    log(f"{stage}: skipped, Elasticsearch is not usable: {problem}")
                    print(f"{stage}: skipped (Elasticsearch not usable)")
                    results["details"][stage] = {"skipped": problem}
                    continue
            detail = run_stage(
                stage, args, names, topic, results, command=command, timeout=timeout, sample=sample
            )
            detail["stage_s"] = round(time.monotonic() - started, 1)
            results["details"][stage] = detail
    finally:
        log(f"clean-up: topics, indices and S3 objects named {names.prefix}*")
        with contextlib.suppress(Exception):
            delete_topics(names.prefix)
        with contextlib.suppress(Exception):
            delete_es(names.prefix)
        with contextlib.suppress(Exception):
            delete_s3(names.prefix)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["targets"] = targets(results)
    return results


def recovery_runs(previous: dict[str, Any], fresh: dict[str, Any]) -> list[dict[str, Any]]:
    """Recovery figures of every worker version measured, the newest per commit.

    Kept across runs, whole or partial: they compare worker versions (before and after a
    change), each measured with its own command.
    """
    runs = {
        run["worker_commit"]: run
        for run in [*previous.get("recovery_runs", []), *fresh.get("recovery_runs", [])]
    }
    return list(runs.values())


def merged_into_previous(previous: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """`--only`: the stages just run replace theirs; every other figure is kept as it was."""
    figures = {
        key: value
        for key, value in fresh.items()
        if key.endswith("_eps") or key in ("rss_mb", "recovery_s", "rebuild_s", "freshness")
    }
    figures["recovery_runs"] = recovery_runs(previous, fresh)
    details = {**previous.get("details", {}), **fresh.get("details", {})}
    merged = {**previous, **figures, "details": details}
    # Which commands made the figures; the machine and versions as of the latest run.
    merged["commands"] = [*previous.get("commands", []), *fresh.get("commands", [])]
    for key in ("machine", "versions", "setup", "finished_at", "args"):
        if key in fresh:
            merged[key] = fresh[key]
    if "args" in fresh:
        # Figures kept from earlier runs are shown with the sizes they were measured at.
        kept_args = previous.get("args", {})
        ran = set(fresh["args"].get("stages") or STAGES)
        kept = [*(("duration", "rates", "drain", "warm_up") if "freshness" not in ran else ())]
        kept += ["ids"] if "rss" not in ran else []
        merged["args"] = {
            **fresh["args"],
            **{key: kept_args[key] for key in kept if key in kept_args},
        }
    merged["targets"] = targets(merged)
    return merged


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # As Ctrl-C does: every `finally` runs, so workers stop and our names are deleted.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    results = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.no_render:
        # An experiment: its figures stay out of latest.json, which BENCHMARKS.md is
        # rendered from.
        stamp = results["started_at"].replace(":", "").replace("+0000", "Z")
        path = RESULTS / f"run-{stamp}.json"
    else:
        path = LATEST
        if LATEST.exists():
            previous = orjson.loads(LATEST.read_bytes())
            if set(args.stages).issuperset(STAGES):
                # Every stage ran: every figure is this run's.
                results["recovery_runs"] = recovery_runs(previous, results)
            else:
                results = merged_into_previous(previous, results)
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")
    for row in results["targets"]:
        state = {True: "reached", False: "NOT reached", None: "not measured"}[row["reached"]]
        print(f"target {row['name']} {row['target']}: {row['value']} ({state})")
    if not args.no_render:
        from bench import render

        render.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
