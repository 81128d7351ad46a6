"""BENCHMARKS.md and bench/results/freshness.png from bench/results/latest.json.

python -m bench.render   # after `python -m bench.run --no-render`, or to re-render
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from bench.common import REPO, RESULTS

LATEST = RESULTS / "latest.json"
PLOT = RESULTS / "freshness.png"
DOCUMENT = REPO / "BENCHMARKS.md"
FULL = {"events": 1_000_000, "duration": 60, "ids": 1_000_000}


def _es_cost_cell(row: dict[str, Any]) -> str:
    if "es_cpu_s" not in row:
        return "—"
    return f"{row['es_cpu_s']:,.1f} / {row['es_refreshes']:,.0f} / {row['es_merge_s']:,.1f}"


def number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def seconds(value: Any, drain: float) -> str:
    return f"> {drain:g}" if value is None else f"{value:.2f}"


def sinks_on_events(results: dict[str, Any]) -> int | None:
    """How many events the sinks-on merge stage ran over (its own sample topic)."""
    events = results.get("details", {}).get("merge-sinks", {}).get("events")
    return int(events) if events is not None else None


def run_kind(results: dict[str, Any]) -> str:
    args = results.get("args", {})
    small = [name for name, full in FULL.items() if args.get(name, full) < full]
    if results.get("experiment"):
        return "experiment"
    return "smoke" if small else "full"


def plot(results: dict[str, Any]) -> bool:
    rows = results.get("freshness") or []
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drain = float(results["args"].get("drain", 60))
    rates = [row["rate"] for row in rows]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=110)
    styles = (
        ("p50_s", "p50", "o"),
        ("p95_s", "p95", "s"),
        ("p99_s", "p99", "^"),
        ("max_s", "max", "v"),
    )
    for key, label, marker in styles:
        shown = [row[key] if row[key] is not None else drain for row in rows]
        censored = [row[key] is None for row in rows]
        (line,) = axes.plot(rates, shown, marker=marker, label=label)
        for rate, value, cut in zip(rates, shown, censored, strict=True):
            if cut:
                axes.annotate("↑", (rate, value), ha="center", va="bottom", color=line.get_color())
    axes.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="1 s target (p99 at 5k/s)")
    axes.set_yscale("log")
    if max(rates) >= 10 * min(rates):
        axes.set_xscale("log")
    axes.set_xticks(rates, [f"{rate:,}" for rate in rates])
    axes.minorticks_off()
    axes.set_xlabel("produce rate, events/s")
    axes.set_ylabel("produce → searchable in Elasticsearch, s")
    kind = run_kind(results)
    duration = results["args"].get("duration")
    axes.set_title(
        f"leadedge freshness ({kind} run, {duration:g} s per rate)"
        + (f"; ↑ = over {drain:g} s" if any(None in (r["p99_s"], r["max_s"]) for r in rows) else "")
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(PLOT)
    plt.close(figure)
    return True


def _sink_text(writes: dict[str, Any] | None) -> str:
    if not writes:
        return ""
    parts = [
        f"{sink} {w['writes']:,} writes of {w['avg_batch']:g} on average,"
        f" {w['avg_write_ms']:g} ms each"
        for sink, w in writes.items()
    ]
    return "; sink writes: " + "; ".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def findings(results: dict[str, Any]) -> list[str]:
    """What the figures say, in sentences computed from them."""
    out: list[str] = []
    merge = results.get("merge_eps")
    floor = results.get("floor_eps")
    quix = results.get("quix_eps")
    sinks = results.get("merge_sinks_on_eps")
    details = results.get("details", {})
    if merge and floor:
        out.append(
            f"The merge worker handles {merge / floor:.1%} of what a bare aiokafka consumer"
            f" with an orjson parse reads ({merge:,.0f} vs {floor:,.0f} events/s): the"
            " Kafka client is not what limits it."
        )
    if merge and quix:
        ratio = quix / merge
        out.append(
            f"The same merge code on Quix Streams handles {quix:,.0f} events/s,"
            f" {ratio:.2f} times the Faust worker's {merge:,.0f}."
            if ratio > 1
            else f"The Faust worker ({merge:,.0f} events/s) handles {merge / quix:.2f} times"
            f" what the same merge code does on Quix Streams ({quix:,.0f} events/s)."
        )
    pure = results.get("pure_eps")
    if pure:
        us = details.get("pure", {}).get("us_per_event")
        out.append(
            f"leadedge's own merge code (validate, merge, enrich, history, JSON) runs at"
            f" {pure:,.0f} events/s on one core with no framework around it ({us} µs per"
            " event); the worker also counts each event into its per-minute partials in the"
            " same pass" + (f", and reaches {merge / pure:.0%} of that figure." if merge else ".")
        )
    faust_floor = results.get("faust_floor_eps")
    if faust_floor:
        out.append(
            f"A stock Faust agent on the same app and topic that only parses and counts"
            f" handles {faust_floor:,.0f} events/s: Faust's per-record stream path costs"
            f" {1e6 / faust_floor:,.0f} µs per record. The batch engine takes `requests`"
            " off that path: a fetch at a time, acknowledged in bulk."
        )
    floor_write = results.get("faust_floor_write_eps")
    if faust_floor and floor_write:
        write_us = 1e6 / floor_write - 1e6 / faust_floor
        out.append(
            f"The same agent writing one table key per record handles {floor_write:,.0f}"
            f" events/s: one Faust table write (RocksDB put, changelog record through"
            f" Faust's producer buffer, its bookkeeping) costs about {write_us:,.0f} µs."
            " The engine writes each changed key once per flush instead, its changelog"
            " records in batches, and the local store only after they are acknowledged."
        )
    merge_detail = details.get("merge", {})
    if merge_detail.get("seconds"):
        cpu_share = merge_detail["worker_cpu_s"] / merge_detail["seconds"]
        busy = merge_detail["machine_busy"]
        cores = results["machine"]["nproc"]
        out.append(
            f"During the merge the worker used {cpu_share:.0%} of one core (the machine was"
            f" {busy:.0%} busy over {cores} cores)"
            + (
                ": one Python process, CPU-bound on its one core."
                if cpu_share >= 0.9
                else (
                    "; the machine was saturated, so part of the time the worker waited for"
                    " CPU (the broker and Elasticsearch run here too)."
                    if busy >= 0.9
                    else "; the rest of the time it waited (for the broker's acknowledgements)."
                )
            )
        )
    if merge and sinks:
        out.append(
            f"With every agent of the product in the same process (as `faust -A leadedge"
            f" worker` runs it), the merge reaches {sinks:,.0f} events/s,"
            f" {sinks / merge:.0%} of the merge alone: the other agents share its one core."
        )
        sinks_detail = details.get("merge-sinks", {})
        writes = sinks_detail.get("sinks_writes", {}).get("elasticsearch")
        if writes:
            out.append(
                f"Elasticsearch is written from the engine's flushes: {writes['writes']:,}"
                f" bulk writes of {writes['avg_batch']:,.0f} documents on average,"
                f" {writes['avg_write_ms']:,.0f} ms each; a merged event is searchable"
                " once its flush is acknowledged, whatever the backlog."
            )
    profile = details.get("profile", {}).get("summary")
    if profile:
        packages = {row["package"]: row["percent"] for row in profile["by_package"]}
        own = sum(packages.get(name, 0) for name in ("leadedge", "agents", "tables"))
        framework = sum(
            packages.get(name, 0)
            for name in ("faust", "mode", "aiokafka", "stdlib:asyncio", "stdlib:selectors")
        )
        out.append(
            f"Profile of the merge worker: {own:.0f}% of the samples are in leadedge's own"
            f" code (validation, merge, enrichment, history), {framework:.0f}% in Faust,"
            " mode, aiokafka and the asyncio loop."
        )
    refresh = results.get("setup", {}).get("es_refresh_interval", "1s")
    sustained = [row for row in results.get("freshness", []) if row["sustained"]]
    if sustained:
        best = max(sustained, key=lambda row: row["rate"])
        out.append(
            f"The highest rate the worker sustained is {best['rate']:,} events/s: produce to"
            f" searchable in p50 {best['p50_s']:g} s, p99 {best['p99_s']:g} s. Elasticsearch's"
            f" refresh interval ({refresh}) alone adds up to that much to every delay."
        )
    for row in results.get("freshness", []):
        if not row["sustained"]:
            out.append(
                f"At {row['rate']:,} events/s the worker fell behind (merge backlog up to"
                f" {row['merge_lag_last_third_max']:,} events, index backlog up to"
                f" {row['index_lag_last_third_max']:,} in the last third of the run), so"
                " delays grow with the run's length rather than measure the pipeline."
            )
    return out


def document(results: dict[str, Any], plotted: bool) -> str:
    args = results.get("args", {})
    machine = results.get("machine", {})
    kind = run_kind(results)
    drain = float(args.get("drain", 60))
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m bench.run`, then `python -m bench.render`)"
        " from `bench/results/latest.json`: edit `bench/render.py`, not this file.",
        "",
    ]
    if kind == "smoke":
        lines += [
            f"> **Reduced run.** Sizes below the issue's (events {args.get('events'):,},"
            f" {args.get('duration'):g} s per rate, {args.get('ids'):,} ids): at the rates"
            " below the full sizes take hours. Rates are per-second figures and change"
            " little with size; the full run is `make bench`.",
            "",
        ]
    elif kind == "experiment":
        lines += [f"> **Experiment:** {results.get('experiment')}.", ""]
    lines += ["## Figures", ""]
    rows = [
        ["merge_eps (merge worker, sinks off)", number(results.get("merge_eps")), "events/s"],
        ["floor_eps (aiokafka + orjson.loads)", number(results.get("floor_eps")), "events/s"],
        ["quix_eps (same merge on Quix Streams)", number(results.get("quix_eps")), "events/s"],
        [
            "pure_eps (leadedge's merge functions, no Kafka, no framework)",
            number(results.get("pure_eps")),
            "events/s",
        ],
        [
            "faust_floor_eps (Faust agent that parses and counts)",
            number(results.get("faust_floor_eps")),
            "events/s",
        ],
        [
            "faust_floor_write_eps (the same, plus one table write per record)",
            number(results.get("faust_floor_write_eps")),
            "events/s",
        ],
        [
            f"merge with every agent on (sinks on, {number(sinks_on_events(results))} events)",
            number(results.get("merge_sinks_on_eps")),
            "events/s",
        ],
        [
            f"rss_mb ({number(args.get('ids'))} distinct ids, sinks"
            f" {'on' if args.get('rss_sinks', True) else 'off'})",
            number(results.get("rss_mb")),
            "MB",
        ],
        [
            f"recovery_s (kill -9 to `/health` 200, {number(args.get('ids'))} requests held)",
            number(results.get("recovery_s"), 1),
            "s",
        ],
        [
            "collector_eps (`POST /requests`, arrays of 100, 4 clients, accepted)",
            number(results.get("collector_eps")),
            "events/s",
        ],
    ]
    lines += _table(["figure", "value", "unit"], rows)
    lines += ["", "### Targets (reported, not asserted)", ""]
    target_rows = []
    for row in results.get("targets", []):
        value = row["value"]
        shown = number(value, 3 if isinstance(value, float) and value < 100 else 0)
        if row["name"].startswith("freshness_") and value is None and row["reached"] is False:
            shown = f"> {drain:g} s"
        state = {True: "reached", False: "**not reached**", None: "not measured"}[row["reached"]]
        target_rows.append([row["meaning"], row["target"], shown, state])
    lines += _table(["target", "goal", "measured", ""], target_rows)

    recovery_runs = results.get("recovery_runs") or []
    if recovery_runs:
        lines += [
            "",
            "## Recovery: kill -9 to `/health` 200",
            "",
            "The rss stage's worker (sinks off), killed once it holds `--ids` requests and"
            " started again over the same data directory. A worker from another commit runs"
            " with `BENCH_WORKER_REPO=<checkout of that commit>` and this commit's bench.",
            "",
        ]
        lines += _table(
            ["worker commit", "requests held", "kill -9 → /health 200", "command"],
            [
                [
                    f"`{run['worker_commit']}`",
                    f"{run['ids']:,}",
                    f"{run['recovery_s']:,.1f} s",
                    f"`{run['command']}`",
                ]
                for run in recovery_runs
            ],
        )

    freshness = results.get("freshness") or []
    refresh_interval = results.get("setup", {}).get("es_refresh_interval", "?")
    if freshness:
        lines += ["", "## Freshness: produce → searchable in Elasticsearch", ""]
        fresh_rows = [
            [
                f"{row['rate']:,}",
                f"{row['produced_per_s']:,.0f}",
                seconds(row["p50_s"], drain),
                seconds(row["p95_s"], drain),
                seconds(row["p99_s"], drain),
                seconds(row["max_s"], drain),
                f"{row['probes_seen']:,} / {row['probes']:,}",
                "yes" if row["sustained"] else "**no**",
                f"{row['merge_lag_last_third_max']:,} / {row['index_lag_last_third_max']:,}",
                _es_cost_cell(row),
            ]
            for row in freshness
        ]
        lines += _table(
            [
                "rate/s",
                "produced/s",
                "p50 s",
                "p95 s",
                "p99 s",
                "max s",
                "probes seen",
                "sustained",
                "backlog merge / index",
                "Elasticsearch CPU s / refreshes / merge s",
            ],
            fresh_rows,
        )
        if plotted:
            lines += ["", "![freshness percentiles against rate](bench/results/freshness.png)"]
        lines += [
            "",
            f"Each rate ran {args.get('duration'):g} s against a fresh worker; the last probes"
            f" then had up to {drain:g} s to become searchable. Backlog: the most events not"
            " yet handled by the merge agent / not yet indexed, in the last third of the run."
            " Elasticsearch: the node's CPU seconds, refreshes and merge time over the run and"
            f" its drain, with refresh interval {refresh_interval}.",
        ]

    details = results.get("details", {})
    lines += ["", "## Details", ""]
    load = results.get("load")
    if load:
        shape = load.get("shape", {})
        lines += [
            f"- **Load**: {load['events']:,} events, {load['avg_event_bytes']} bytes on average"
            f" (200 to 400), produced at {load['events_per_s']:,.0f}/s by `bench/loadgen.py`"
            f" (aiokafka batch API); events per id Zipf(s={shape.get('zipf_s')}) up to"
            f" {shape.get('max_events_per_id')} (mean {load.get('mean_events_per_id_zipf')}),"
            f" {shape.get('open_ids'):,} requests open at once, seed {shape.get('seed')}.",
        ]
    for stage, detail in details.items():
        if "skipped" in detail:
            lines.append(f"- **{stage}**: skipped: {detail['skipped']}")
    details = {stage: d for stage, d in details.items() if "skipped" not in d}
    for stage, title in (
        ("merge", "merge_eps"),
        ("merge-sinks", "merge, sinks on"),
        ("profile", "profiled merge"),
    ):
        detail = details.get(stage)
        if detail:
            lines.append(
                f"- **{title}**: `{detail['app']}` (sinks {detail['sinks']}),"
                f" {detail['events']:,} events in {detail['seconds']:,.1f} s after"
                f" {detail['startup_s']:.1f} s start-up; outcomes {detail['outcomes']};"
                f" worker CPU {detail['worker_cpu_s']:,.0f} s; machine"
                f" {detail['machine_busy']:.0%} busy; RSS {detail['rss_mb']:,.0f} MB"
                + _sink_text(detail.get("sinks_writes"))
                + (
                    f"; every merged record indexed {detail['all_indexed_after_s']:g} s after"
                    " the last merge"
                    if detail.get("all_indexed_after_s") is not None
                    else ""
                )
                + "."
            )
    floor = details.get("floor")
    if floor:
        lines.append(
            f"- **floor_eps**: {floor['events']:,} records in {floor['seconds']:.2f} s,"
            " one aiokafka consumer (partitions assigned, no group) and `orjson.loads`."
        )
    quix = details.get("quix")
    if quix:
        lines.append(
            f"- **quix_eps**: {quix['app']}, {quix['events']:,} events in {quix['seconds']:.1f} s"
            f" after {quix['startup_s']:.1f} s start-up (final commit {quix['final_commit_s']} s);"
            " `bench/peers/quix_merge.py`."
        )
    length = details.get("request-length")
    if length:
        positions = length["positions"]
        out_length = ", ".join(
            f"{int(n):,}: {p['kept us']:,.0f} µs"
            for n, p in sorted(positions.items(), key=lambda i: int(i[0]))
        )
        lines.append(
            f"- **request-length**: per-event cost of a request's n-th event, states kept"
            f" decoded ({out_length}; a chunk of history that fills is written on top);"
            f" the 1,000th costs {length['kept last/first']:g} times the first"
            f" ({length['round trip last/first']:g} times when the state is decoded and encoded per"
            " event)."
        )
    rss = details.get("rss")
    if rss:
        sinks_on = rss.get("sinks", "on") == "on"
        lines.append(
            f"- **rss_mb**: `{rss['app']}` (sinks {rss.get('sinks', 'on')}) after"
            f" {rss['ids']:,} distinct ids merged"
            + (f" and {rss['indexed_before_reading']:,} indexed" if sinks_on else "")
            + f" ({rss['merge_events_per_s']:,.0f} events/s): VmRSS {rss['rss_mb']:,.0f} MB"
            f" (when merged {rss['rss_mb_when_merged']:,.0f} MB, at start"
            f" {rss['baseline_rss_mb']:,.0f} MB, peak VmHWM {rss['peak_rss_mb']:,.0f} MB)."
            + (
                f" Killed (kill -9) and started again: `/health` 200 after"
                f" {rss['recovery_s']:,.1f} s."
                if "recovery_s" in rss
                else ""
            )
        )

    profile = details.get("profile", {}).get("summary")
    if profile:
        lines += [
            "",
            "## Profile of the merge worker (py-spy, sinks off)",
            "",
            f"{profile['samples']:,.0f} s of samples; speedscope file"
            f" `{details['profile']['file']}` (git-ignored), every thread. The samples on"
            " `ServiceThread._start_thread` are Faust's consumer thread (aiokafka in an event"
            " loop of its own) waiting for fetches: the worker's CPU time stays at about one"
            " core (see merge_eps above), so the main thread holds nearly all of it."
            " Top of the stack (self):",
            "",
        ]
        lines += _table(
            ["%", "function"],
            [[f"{row['percent']:.1f}", f"`{row['function']}`"] for row in profile["self"][:12]],
        )
        lines += ["", "leadedge's own functions, total (anywhere on the stack):", ""]
        lines += _table(
            ["%", "function"],
            [
                [f"{row['percent']:.1f}", f"`{row['function']}`"]
                for row in profile.get("own_total", [])[:10]
            ],
        )
        if profile.get("merge_agent"):
            lines += [
                "",
                "Inside the engine's intake (`MergeStep.apply`), one call down, as shares of"
                " all samples:",
                "",
            ]
            lines += _table(
                ["%", "call"],
                [
                    [f"{row['percent']:.1f}", f"`{row['function']}`"]
                    for row in profile.get("merge_agent", [])[:10]
                ],
            )
        lines += ["", "By task (what the event loop was running):", ""]
        lines += _table(
            ["%", "task"],
            [
                [f"{row['percent']:.1f}", f"`{row['task']}`"]
                for row in profile.get("by_task", [])[:8]
            ],
        )
        pure = details["profile"].get("pure_cprofile")
        if pure:
            lines += [
                "",
                f"leadedge's merge code alone (cProfile of the pure loop, {pure['events']:,}"
                " events), by total time:",
                "",
            ]
            lines += _table(
                ["total %", "self %", "calls", "function"],
                [
                    [
                        f"{row['total_percent']:.1f}",
                        f"{row['self_percent']:.1f}",
                        f"{row['calls']:,}",
                        f"`{row['function']}`",
                    ]
                    for row in pure["total"]
                    if "_pure_loop" not in row["function"]
                ][:12],
            )
        lines += ["", "By package of the frame on top of the stack:", ""]
        lines += _table(
            ["%", "package"],
            [[f"{row['percent']:.1f}", row["package"]] for row in profile["by_package"][:10]],
        )

    notes = findings(results)
    if notes:
        lines += ["", "## What the figures say", ""]
        lines += [f"- {note}" for note in notes]

    versions = results.get("versions", {})
    setup = results.get("setup", {})
    lines += [
        "",
        "## Machine and run",
        "",
        f"- {machine.get('nproc')} cores ({machine.get('cpu_model')}),"
        f" {machine.get('memory_gib')} GiB memory, Linux {machine.get('kernel')};"
        f" load average at start {machine.get('load_average_at_start')}.",
        f"- Broker, Elasticsearch (refresh {setup.get('es_refresh_interval', '1s')}), S3 (moto)"
        " and the worker on this machine"
        " (`leadedge stack up`); " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"- Worker: `{setup.get('worker_command')}`, {setup.get('partitions')} partitions,"
        f" GeoIP database {setup.get('geoip_db')}.",
        f"- Run {results.get('started_at')} → {results.get('finished_at')}: "
        + ", then ".join(
            f"`{c.strip()}`" for c in results.get("commands", [results.get("command")])
        )
        + ".",
        "",
        "## Commands",
        "",
        "```sh",
        "make bench                                          # everything, the issue's sizes",
        'make bench BENCH_ARGS="--events 50000 --duration 10 --ids 100000"   # a smoke run',
        'make bench BENCH_ARGS="--only merge,floor,quix --events 200000"     # some stages',
        'make bench BENCH_ARGS="--only profile --events 100000"  # py-spy on the merge worker',
        ".venv/bin/python -m bench.profiling bench/results/profile-merge.speedscope.json",
        ".venv/bin/python -m bench.loadgen --topic T --rate 5000 --duration 60  # load alone",
        ".venv/bin/python -m bench.render                    # re-render this file",
        "```",
        "",
        "How each figure is measured:",
        "",
        "- **merge_eps**: `--events` realistic events are produced to a fresh 8-partition"
        " topic first. A real worker process, `faust -A bench.merge_only worker` (the"
        " product's app, batch engine with its per-minute step 1, tables and HTTP views;"
        " Elasticsearch is left out of the flush, the S3 archive and the stats totals are"
        " not loaded), reads it"
        " from the start with its own app id;"
        " its `/metrics` counter `leadedge_events_total` (merged + duplicate + dead letter)"
        " is polled every 0.2 s, and the rate is taken from the first record handled to the"
        " last, so start-up and group join are not counted.",
        "- **floor_eps**: the same topic read by one aiokafka consumer, `orjson.loads` on"
        " every value, nothing else.",
        "- **quix_eps**: `bench/peers/quix_merge.py`, the same leadedge merge functions in"
        " a Quix Streams app (RocksDB state with changelog, output and dead-letter topics).",
        "- **pure_eps**: the same events (same seed) through leadedge's `RecordProcessor`,"
        " history append, `merged_request` and orjson in a plain loop, dicts for tables.",
        "- **faust_floor_eps**: `faust -A bench.faust_floor worker`, the product's app"
        " and topic with one agent that parses each value and counts it;"
        " **faust_floor_write_eps**: the same agent also writing one table key per record.",
        "- **merge with sinks on**: as merge_eps with `faust -A leadedge worker`, every"
        " agent autodiscovered, as deployed, over a topic of the first `--sample-events`"
        " events (same seed); the Faust floors and the profile also stop after"
        " `--sample-events`: they describe a per-record cost, not a total.",
        "- **freshness**: see `bench/freshness.py`: every 20th event is a one-event probe id"
        " carrying `sent_ms`; Elasticsearch is searched every 0.1 s for the probes not seen"
        " yet; delay = first returned minus `sent_ms`.",
        "- **rss_mb**: `--ids` events with distinct ids through the merge worker"
        " (`bench.merge_only`: the batch engine, its tables in RocksDB, the HTTP views);"
        " VmRSS from `/proc/PID/status` once all are merged. `--rss-sinks` runs the"
        " product's worker instead and also waits until all are indexed.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    if not LATEST.exists():
        print(f"no {LATEST}: run python -m bench.run first", file=sys.stderr)
        return 1
    results = orjson.loads(LATEST.read_bytes())
    plotted = plot(results)
    DOCUMENT.write_text(document(results, plotted))
    print(f"wrote {DOCUMENT.name}" + (f" and {PLOT.relative_to(REPO)}" if plotted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
