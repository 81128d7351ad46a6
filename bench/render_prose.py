"""BENCHMARKS.md's sentences: what the figures say, and the details of each stage."""

from __future__ import annotations

from typing import Any

# The processes a freshness row shows the cores of, in order, by what the prose calls them
# (`bench.measure.PROCESS_KINDS` names them; the others are summed as "the rest").
CPU_KINDS = {
    "worker": "the worker",
    "elasticsearch": "Elasticsearch",
    "kafka": "Kafka",
    "load": "the load generator",
}


def _sink_text(writes: dict[str, Any] | None) -> str:
    if not writes:
        return ""
    parts = [
        f"{sink} {w['writes']:,} writes of {w['avg_batch']:g} on average,"
        f" {w['avg_write_ms']:g} ms each"
        for sink, w in writes.items()
    ]
    return "; sink writes: " + "; ".join(parts)


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
        detail = details.get("pure", {})
        us = detail.get("us_per_event")
        round_trip = detail.get("round_trip_events_per_s")
        out.append(
            f"leadedge's own merge step as the engine runs it (validate, merge, enrich,"
            f" history, per-minute count, the flush's encodings) runs at {pure:,.0f} events/s"
            f" on one core with no framework around it ({us} µs per event)"
            + (f"; the worker reaches {merge / pure:.0%} of that figure" if merge else "")
            + (
                f". Decoding and encoding each state at every event instead, as a worker"
                f" without the write-back cache would, gives {round_trip:,.0f} events/s."
                if round_trip
                else "."
            )
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
                + _cores_sentence(row, results)
            )
    return out


def _cores_sentence(row: dict[str, Any], results: dict[str, Any]) -> str:
    """Where the machine's cores went during a freshness rate, when it was measured."""
    cores = row.get("cpu_cores")
    if not cores or row.get("machine_busy") is None:
        return ""
    shown = ", ".join(f"{name} {cores[key]:.2f}" for key, name in CPU_KINDS.items() if key in cores)
    nproc = results.get("machine", {}).get("nproc", "?")
    return f" The machine's {nproc} cores were {row['machine_busy']:.0%} busy: {shown} (cores)."


def details_lines(results: dict[str, Any]) -> list[str]:
    """The Details section: the load, the stages skipped, then a line a stage measured."""
    lines: list[str] = []
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
        # Runs before the "flushed" mode measured only "kept".
        mode = "flushed" if "flushed last/first" in length else "kept"
        out_length = ", ".join(
            f"{int(n):,}: {p[f'{mode} us']:,.0f} µs"
            for n, p in sorted(positions.items(), key=lambda i: int(i[0]))
        )
        kept = (
            f"{length['kept last/first']:g} times when it is not encoded, "
            if mode == "flushed"
            else ""
        )
        lines.append(
            "- **request-length**: per-event cost of a request's n-th event, states kept"
            + (
                " decoded and encoded once after the event, as a flush does"
                if mode == "flushed"
                else " decoded"
            )
            + f" ({out_length}; a chunk of history that fills is written on top);"
            f" the 1,000th costs {length[f'{mode} last/first']:g} times the first"
            f" ({kept}{length['round trip last/first']:g} times when the state is also decoded"
            " before each event)."
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
            + (
                f" Killed again and started without its data directory (every table rebuilt"
                f" from its changelog): after {rss['rebuild_s']:,.1f} s."
                if "rebuild_s" in rss
                else ""
            )
        )
    return lines
