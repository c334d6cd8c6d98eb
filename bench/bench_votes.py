"""Benchmark: submit a vote plus fetch the next query, on SQLite, with 20 readers and 10,000 stored votes.

Builds a throwaway study (synthetic images and renderer, overlap allocation, enough cases that every reader
has work left after the stored votes), stores the votes through the bulk path, then times, per cycle, the two
transactions the app makes after a click: ``submit_vote`` for the current query and ``next_query`` for the
following one. Two runs: one client cycling through the 20 readers, and 20 concurrent reader threads.

    python bench/bench_votes.py                  # defaults: 20 readers, 10,000 stored votes, 400 timed cycles
    python bench/bench_votes.py --json out.json  # also write the figures as JSON

The issue's target: p95 <= 20 ms on the project's 2-core machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study import audit  # noqa: E402
from study.accounts import add_reader  # noqa: E402
from study.builder import StudySpec, build_study  # noqa: E402
from study.db import connect  # noqa: E402
from study.models import AuditEvent, Query, Vote, utcnow  # noqa: E402
from study.render import SyntheticRenderer  # noqa: E402
from study.simstudy import write_synthetic_manifest  # noqa: E402
from study.voting import next_query, submit_vote  # noqa: E402


def _prefill(factory, study_id: int, per_reader: int) -> int:  # type: ignore[no-untyped-def]
    """Store ``per_reader`` votes for each reader's first queries (bulk, with their audit entries)."""
    now = utcnow() - timedelta(days=1)
    with factory.begin() as s:
        rows = s.execute(select(Query.id, Query.reader_id).where(Query.study_id == study_id,
                                                                Query.position < per_reader)).all()
        s.execute(Vote.__table__.insert(), [
            {"query_id": qid, "chosen_slot": 1 + qid % 5, "confidence": 3, "comment": None, "shown_at": now,
             "answered_at": now + timedelta(seconds=8), "sitting_id": None} for qid, _ in rows])
        s.execute(AuditEvent.__table__.insert(), [
            {"at": now, "action": audit.VOTE, "reader_id": rid, "study_id": study_id, "client_key": None,
             "detail": {"query_id": qid, "slot": 1 + qid % 5, "practice": False}} for qid, rid in rows])
    return len(rows)


def _cycle(factory, reader_id: int, token: str, slot: int,  # type: ignore[no-untyped-def]
           cpu: list[float] | None = None) -> tuple[float, str]:
    t0, c0 = time.perf_counter(), time.process_time()
    with factory.begin() as s:
        submit_vote(s, reader_id, token, slot)
    with factory.begin() as s:
        view = next_query(s, reader_id)
    if cpu is not None:
        cpu.append((time.process_time() - c0) * 1000.0)
    if view is None:
        raise RuntimeError("a reader ran out of queries; the benchmark sized the study wrong")
    return (time.perf_counter() - t0) * 1000.0, view.query_token


def _summary(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": int(a.size), "mean_ms": float(a.mean()), "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)), "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max())}


def run(n_readers: int, stored: int, cycles: int, concurrent_cycles: int, workdir: Path) -> dict[str, object]:
    per_reader = -(-stored // n_readers)
    n_cases = per_reader + -(-(cycles + 20) // n_readers) + concurrent_cycles + 2  # work left after the stored votes
    factory = connect(f"sqlite:///{workdir / 'bench.db'}", migrate=True)
    manifest = write_synthetic_manifest(workdir / "data", n_cases, seed=0)
    names = [f"reader{i:02d}" for i in range(n_readers)]
    with factory.begin() as s:
        ids = [add_reader(s, n)[0].id for n in names]
    t = time.perf_counter()
    sid = build_study(factory, StudySpec(name="bench", manifest=manifest, n_cases=n_cases, readers=tuple(names)),
                      SyntheticRenderer(working_size=16), assets=workdir / "assets", show_bar=False)
    build_s = time.perf_counter() - t
    n_stored = _prefill(factory, sid, per_reader)
    current = {}
    for rid in ids:
        with factory.begin() as s:
            current[rid] = next_query(s, rid).query_token
    rng = np.random.default_rng(0)
    for i in range(20):  # warm-up (statement caches, connection pool)
        rid = ids[i % n_readers]
        _, current[rid] = _cycle(factory, rid, current[rid], int(rng.integers(1, 6)))
    seq: list[float] = []
    cpu: list[float] = []
    for i in range(cycles):
        rid = ids[i % n_readers]
        ms, current[rid] = _cycle(factory, rid, current[rid], int(rng.integers(1, 6)), cpu)
        seq.append(ms)
    conc: list[float] = []
    lock = threading.Lock()

    def reader_thread(rid: int) -> None:
        local = np.random.default_rng(rid)
        out = []
        for _ in range(concurrent_cycles):
            ms, current[rid] = _cycle(factory, rid, current[rid], int(local.integers(1, 6)))
            out.append(ms)
        with lock:
            conc.extend(out)

    threads = [threading.Thread(target=reader_thread, args=(rid,)) for rid in ids]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    with factory.begin() as s:
        total_votes = len(s.scalars(select(Vote.id)).all())
    return {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_avg_1m": os.getloadavg()[0], "readers": n_readers, "stored_votes_before": n_stored,
        "votes_at_end": total_votes, "build_s": round(build_s, 2),
        "sequential": _summary(seq),
        "sequential_cpu": _summary(cpu),
        "concurrent_20_threads": {**_summary(conc), "throughput_cycles_per_s": len(conc) / wall},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readers", type=int, default=20)
    p.add_argument("--stored", type=int, default=10_000)
    p.add_argument("--cycles", type=int, default=400, help="timed cycles, one client round-robin over readers")
    p.add_argument("--concurrent-cycles", type=int, default=15, help="timed cycles per reader thread")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="r2c-bench-votes-") as tmp:
        result = run(args.readers, args.stored, args.cycles, args.concurrent_cycles, Path(tmp))
    s, c = result["sequential"], result["concurrent_20_threads"]
    print(f"{result['machine']}; load average {result['load_avg_1m']:.1f}")
    print(f"{result['readers']} readers, {result['stored_votes_before']} stored votes (then {result['votes_at_end']})")
    print(f"submit + next, one client:  p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms, "
          f"p99 {s['p99_ms']:.1f} ms (n={s['n']})")
    cpu = result["sequential_cpu"]
    print(f"  (CPU time of this process per cycle: p50 {cpu['p50_ms']:.1f} ms, p95 {cpu['p95_ms']:.1f} ms)")
    print(f"submit + next, 20 threads:  p50 {c['p50_ms']:.1f} ms, p95 {c['p95_ms']:.1f} ms, "
          f"p99 {c['p99_ms']:.1f} ms (n={c['n']}, {c['throughput_cycles_per_s']:.0f} cycles/s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
