"""Old and new merge code over the same events: every output must be the same.

    python -m bench.compare_merge --events 1000000            # against where main stood
    python -m bench.compare_merge --events 100000 --ref HEAD~3 --counters clicks

The old `leadedge/` is unpacked from a git ref into a temporary directory. Each side runs
in its own process over the same records, the bench load (`bench.generator`, same seed)
with some records altered on the way (`--mix`, redeliveries, repeated event ids, type
conflicts, bad events, unusual values), and writes one line per record: the merged
request as JSON, the history chunk it filled, or the reason it was skipped or rejected.
At the end each side writes a digest of every stored state (bookkeeping included) per
request id. The parent compares the two streams line by line and stops at the first
difference.

The states stay decoded between events, as the engine's write-back cache keeps them, so
a new state that shared and changed anything of the one before it would show here;
`--roundtrip` decodes and encodes them at every event instead, as `bench.stages` does.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import itertools
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import IO, Any

import orjson

REPO = Path(__file__).resolve().parent.parent
RECORD_TS_MS = 1_767_225_600_000
DEEP: dict[str, Any] = {}
_inner = DEEP
for _ in range(20):
    _inner["n"] = {}
    _inner = _inner["n"]


def _altered(event: dict[str, Any], rng: random.Random) -> tuple[bytes | None, bytes | None]:
    """One event changed into something the plain load never sends; (key, value)."""
    key = event["id"].encode()
    roll = rng.randrange(30)
    if roll == 0:
        event["clicks"] = "many"  # a string set; a later increment on it conflicts
    elif roll == 1:
        event["utm"] = "none"  # a scalar where others send an object
    elif roll == 2:
        event["session"] = 5  # a later session object conflicts
    elif roll == 3:
        event["status"] = None
        event["price"] = None
    elif roll == 4:
        event["price"] = rng.choice(["+0.1", "-.5", "+1.", "+0.000001", "-3", "+12345678901234"])
    elif roll == 5:
        event["uptick"] = rng.choice(["+1e2", "+", "-", "++1", "+1.2.3", " +1", "+1 ", "+٣"])
    elif roll == 6:
        event["ts"] = rng.choice(
            [
                RECORD_TS_MS - rng.randrange(10**9),
                RECORD_TS_MS + rng.randrange(10**9) + 0.5,
                "2025-12-31T23:59:59.123Z",
                "2026-01-01T01:00:00+01:00",
                "2026-01-02T00:00:00z",
                "2026-01-02 00:00:00",
                "yesterday",
                True,
                [1],
            ]
        )
    elif roll == 7:
        event[rng.choice(["created_at", "geo", "user_agent", "event_count", "updated_at"])] = 1
    elif roll == 8:
        event["nested"] = {"ok": 1, "_hidden": 2} if rng.random() < 0.5 else {"_x": {"y": 1}}
    elif roll == 9:
        event["_private"] = 1
    elif roll == 10:
        event["deep"] = DEEP
    elif roll == 11:
        return key, orjson.dumps(event)[:-3]  # cut short: not JSON
    elif roll == 12:
        return key, orjson.dumps(event).replace(b'"impressions"', b'"x":NaN,"impressions"', 1)
    elif roll == 13:
        return key, orjson.dumps(event).replace(b'"impressions"', b'"x":-Infinity,"i"', 1)
    elif roll == 14:
        return key, b"\xff" + orjson.dumps(event)
    elif roll == 15:
        return key, rng.choice([b"[1,2]", b'"text"', b"null", b"", b"17", b"{}"])
    elif roll == 16:
        return b"other", orjson.dumps(event)
    elif roll == 17:
        event["project"] = rng.choice(["other", "", 3])
    elif roll == 18:
        event["event_id"] = rng.choice([7, True, 1.5, None, "", ["a"]])
    elif roll == 19:
        event["id"] = rng.choice([12345, "", "x" * 300, True, None, 1.5])
        key = str(event["id"]).encode()
    elif roll == 20:
        event["ipaddress"] = rng.choice(["10.0.0.1", "not an ip", "", None, 5, "::1", "2a00::1"])
    elif roll == 21:
        event["useragent"] = rng.choice(["", None, "curl/8.0", 42, "Mozilla/5.0 (X11; Linux)"])
    elif roll == 22:
        event["tags"] = ["a", {"b": None}, [1, 2.5, None]]
        event["flag"] = rng.choice([True, False])
    elif roll == 23:
        event["big"] = "y" * 70_000
    elif roll == 24:
        event["counter"] = rng.choice(["+1", "+0.1", "+0.2", "-0.3", "+2", "+1.5"])
        event["session"] = {"time_on_page_s": rng.choice(["+1", "+0.5", None, "x"])}
    elif roll == 25:
        # Within what orjson encodes: a sum past 64 bits would fail on both sides alike.
        event["huge"] = rng.choice([2**64 - 1, -(2**63), 1e300, -0.0, 1e-300])
        event["count"] = rng.choice(
            ["+" + "9" * 15, "-0", "+0.0", "-00.10", "+0.30000000000000004"]
        )
    elif roll == 26:
        event["unicode"] = "ça va ✓ \u2028"
        event["é"] = {"ü": "+1"}
    elif roll == 27:
        event["price"] = rng.choice(["+1", "+0.5"])
        event["impressions"] = rng.choice([1.5, True, "+2"])
    elif roll == 28:
        event["session"] = None
    else:
        event["event_id"] = "repeat"  # the same event_id for many events of one id
    return key, orjson.dumps(event)


def records(
    events: int, seed: int, mix: float, open_ids: int
) -> Iterator[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of the compared records, the same on both sides."""
    from bench.generator import Generator, LoadShape, encode

    rng = random.Random(seed + 7)
    offset = 0
    previous: tuple[int, bytes | None, bytes | None] | None = None
    for event in itertools.islice(Generator(LoadShape(seed=seed, open_ids=open_ids)), events):
        event["sent_ms"] = RECORD_TS_MS
        roll = rng.random()
        if mix and roll < mix and previous is not None and rng.random() < 0.2:
            # A redelivery: the same record at the same offset, or the same event again.
            if rng.random() < 0.5:
                yield previous
            else:
                offset += 1
                yield offset, previous[1], previous[2]
        if mix and roll < mix:
            key, value = _altered(event, rng)
        else:
            key, value = encode(event, RECORD_TS_MS)
        offset += 1
        previous = (offset, key, value)
        yield previous


def worker(tree: str, args: argparse.Namespace) -> None:
    """One side: the records through the code in `tree`, one line per record on stdout."""
    sys.path.insert(0, tree)
    from bench.common import geoip_db
    from leadedge.config import Settings

    enrich, history_module, merge, models, processing = (
        _rules_module(name) for name in ("enrich", "history", "merge", "models", "processing")
    )
    Enricher = enrich.Enricher
    append, chunk_key, entry = history_module.append, history_module.chunk_key, history_module.entry
    MergeRules, merged_request = merge.MergeRules, merge.merged_request
    Rejection, SourceRecord = models.Rejection, models.SourceRecord
    Merged, RecordProcessor, Skipped = (
        processing.Merged,
        processing.RecordProcessor,
        processing.Skipped,
    )

    print(f"{tree}: leadedge from {sys.modules['leadedge'].__file__}", file=sys.stderr)
    settings = Settings()
    rules = MergeRules(
        counter_fields=frozenset(filter(None, args.counters.split(","))),
        max_event_ids=settings.max_event_ids,
    )
    processor = RecordProcessor(
        rules,
        Enricher.from_database(geoip_db(), settings.ipaddress_field, settings.useragent_field),
        settings.max_event_bytes,
    )
    states: dict[str, Any] = {}
    history: dict[str, bytes] = {}
    loads = orjson.loads
    dumps = functools.partial(orjson.dumps, default=_state_default())

    def lookup(request_id: str) -> Any:
        found = states.get(request_id)
        return loads(found) if args.roundtrip and found is not None else found

    out = sys.stdout.buffer
    write = out.write
    for offset, key, value in records(args.events, args.seed, args.mix, args.open_ids):
        record = SourceRecord("requests", 0, offset, RECORD_TS_MS, key, value)
        outcome = processor.process(record, lookup)
        if isinstance(outcome, Merged):
            full = append(outcome.state, entry(outcome.event, record), settings.history_length)
            if full is not None:
                chunk = dumps(full.entries)
                history[chunk_key(outcome.key, full.chunk)] = chunk
                if not args.merged_only:
                    write(b"H %d %r " % (full.chunk, full.drop) + chunk + b"\n")
                if full.drop is not None:
                    history.pop(chunk_key(outcome.key, full.drop), None)
            states[outcome.key] = dumps(outcome.state) if args.roundtrip else outcome.state
            write(b"M %d " % outcome.created + dumps(merged_request(outcome.state)) + b"\n")
        elif isinstance(outcome, Skipped):
            write(f"S {outcome.key} {outcome.why}\n".encode())
        else:
            assert isinstance(outcome, Rejection)
            write(f"R {outcome.reason} {outcome.detail!r}\n".encode())
    if args.merged_only:
        out.flush()
        return
    for request_id in sorted(states):
        state = states[request_id]
        encoded = state if args.roundtrip else dumps(state)
        write(f"F {request_id} {hashlib.blake2b(encoded).hexdigest()}\n".encode())
    out.flush()


def _rules_module(name: str) -> Any:
    """`leadedge.rules.<name>`, or `leadedge.<name>` in code from before the rules had a room."""
    try:
        return importlib.import_module(f"leadedge.rules.{name}")
    except ModuleNotFoundError:
        return importlib.import_module(f"leadedge.{name}")


def _state_default() -> Any:
    """orjson's `default` for the states of the code on the path (older code needs none)."""
    try:
        from leadedge.rules.event_ids import json_default
    except ImportError:
        return None
    return json_default


def unpack(ref: str, into: Path) -> None:
    """`leadedge/` as it was at `ref`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "leadedge"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def base_ref() -> str:
    """Where this branch left main."""
    found = subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=REPO, capture_output=True, text=True
    )
    return found.stdout.strip() if found.returncode == 0 else "main"


def start(tree: Path, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "bench.compare_merge",
        "--worker",
        str(tree),
        "--events",
        str(args.events),
        "--seed",
        str(args.seed),
        "--mix",
        str(args.mix),
        "--counters",
        args.counters,
        "--open-ids",
        str(args.open_ids),
    ]
    if args.roundtrip:
        command.append("--roundtrip")
    if args.merged_only:
        command.append("--merged-only")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, bufsize=1 << 20)


def compare(old: IO[bytes], new: IO[bytes]) -> tuple[int, dict[str, int], str | None]:
    """Lines read, lines per kind, and the first difference (None: none)."""
    kinds: dict[str, int] = {}
    for number, (a, b) in enumerate(itertools.zip_longest(old, new), start=1):
        if a != b:
            return number, kinds, f"line {number}:\n  old: {a!r:.2000}\n  new: {b!r:.2000}"
        kind = a[:1].decode()
        kinds[kind] = kinds.get(kind, 0) + 1
    return sum(kinds.values()), kinds, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare_merge", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="generated events")
    parser.add_argument("--seed", type=int, default=42, help="the load's seed (bench.run's)")
    parser.add_argument("--ref", help="git ref of the old code (default: merge-base with main)")
    parser.add_argument(
        "--mix", type=float, default=0.05, help="share of records altered (0: the plain load)"
    )
    parser.add_argument("--counters", default="", help="comma-separated counter fields (rule 7)")
    parser.add_argument(
        "--open-ids",
        type=int,
        default=2_000,
        help="requests open at once (the load's 2,000; fewer make long requests sooner)",
    )
    parser.add_argument("--roundtrip", action="store_true", help="states through JSON per event")
    parser.add_argument(
        "--merged-only",
        action="store_true",
        help="compare the merged requests, skips and rejections only, not the history chunks"
        " and stored states (for refs whose timeline is stored in other chunk sizes)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args)
        return 0
    ref = args.ref or base_ref()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="compare-merge-") as tmp:
        old_tree = Path(tmp)
        unpack(ref, old_tree)
        print(f"old: leadedge at {ref}; new: leadedge in {REPO}", file=sys.stderr)
        old, new = start(old_tree, args), start(REPO, args)
        assert old.stdout is not None and new.stdout is not None
        difference: str | None = "interrupted"
        try:
            lines, kinds, difference = compare(old.stdout, new.stdout)
        finally:
            for process in (old, new):
                if difference is not None:
                    process.kill()
                process.wait()
    seconds = time.monotonic() - started
    if difference is None and (old.returncode or new.returncode):
        print(f"a side failed: old exit {old.returncode}, new exit {new.returncode}")
        return 2
    counts = ", ".join(f"{kind} {count:,}" for kind, count in sorted(kinds.items()))
    if difference is not None:
        print(f"DIFFERENT after {lines - 1:,} equal lines ({counts}): {difference}")
        return 1
    print(
        f"same: {args.events:,} events (mix {args.mix}, counters {args.counters or 'none'},"
        f" open ids {args.open_ids}, roundtrip {args.roundtrip},"
        f" {'merged requests only' if args.merged_only else 'chunks and states too'}),"
        f" {lines:,} lines equal ({counts}) in {seconds:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
