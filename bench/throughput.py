"""Throughput of our enqueue + Task/SubTask tracking against bare RQ, same worker class, same stores.

Pushes N no-op operations through each path in interleaved rounds (so drift on the machine hits
both alike) and prints jobs/s for each and the ratio. Each round enqueues N jobs, then one fork
worker drains them in burst mode; wall time covers both. Both paths run on TrackingWorker (our
subclass of RQ's fork Worker, which passes bare jobs straight through); plain rq.Worker on the
bare jobs is printed too, for reference.

    python bench/throughput.py [--jobs 500] [--rounds 4] [--db mysql+pymysql://root@127.0.0.1/] [--redis URL]

Defaults use this machine's MariaDB and Redis (db 14), creating and dropping database openvle_bench.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs per round and path")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--db", default="mysql+pymysql://root@127.0.0.1:3306/", help="server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    from sqlalchemy import create_engine, text

    sqlite = args.db.startswith("sqlite")
    database_url = args.db if sqlite else f"{args.db}openvle_bench"
    if not sqlite:
        admin = create_engine(args.db)
        with admin.begin() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS openvle_bench"))
            conn.execute(text("CREATE DATABASE openvle_bench"))
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=args.redis, LOG_LEVEL="WARNING",
                      SECRET_KEY=secrets.token_urlsafe(32))  # a throwaway key: the database is dropped after

    import logging

    from openvle import logs

    logs.setup("bench", "WARNING")
    logging.getLogger("rq").setLevel(logging.WARNING)

    from rq import Queue, Worker

    from openvle.connections import get_redis
    from openvle.db.engine import get_engine
    from openvle.db.schema import upgrade
    from openvle.enqueue import enqueue_operation
    from openvle.worker import TrackingWorker

    upgrade(get_engine())
    import gc

    from sqlalchemy.orm import configure_mappers

    from openvle import records
    from openvle.operations import load_jobs

    # The worker as the worker role starts it (worker.run), so each fork copies what a real one does.
    load_jobs()
    configure_mappers()
    records.warm_up()
    gc.freeze()
    redis = get_redis()
    redis.flushdb()
    bare_queue = Queue("bench_bare", connection=redis)
    ours_queue = Queue("core_periodic", connection=redis)

    def run_bare(n: int, worker_class=TrackingWorker) -> float:
        started = time.perf_counter()
        for _ in range(n):
            bare_queue.enqueue("os.getpid")  # a no-op, like demo.noop
        worker_class([bare_queue], connection=redis).work(burst=True, logging_level="WARNING")
        return time.perf_counter() - started

    def run_ours(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            enqueue_operation("demo.noop")
        TrackingWorker([ours_queue], connection=redis).work(burst=True, logging_level="WARNING")
        return time.perf_counter() - started

    run_bare(20)  # warm imports and connections
    run_ours(20)
    bare, plain, ours = [], [], []
    for round_no in range(1, args.rounds + 1):
        bare.append(args.jobs / run_bare(args.jobs))
        ours.append(args.jobs / run_ours(args.jobs))
        plain.append(args.jobs / run_bare(args.jobs, Worker))
        print(f"round {round_no}: bare RQ {bare[-1]:7.1f} jobs/s   ours {ours[-1]:7.1f} jobs/s   "
              f"(bare on rq.Worker {plain[-1]:7.1f})")

    from sqlalchemy import func, select

    from openvle.db.engine import session_scope
    from openvle.db.models import SubTask, Task

    with session_scope() as session:
        succeeded = session.execute(select(func.count()).select_from(Task).where(Task.status == "success")).scalar()
        attempts = session.execute(select(func.count()).select_from(SubTask)).scalar()
    expected = 20 + args.jobs * args.rounds
    bare_rate, ours_rate = statistics.median(bare), statistics.median(ours)
    print(f"\nstores: {get_engine().dialect.name} + redis {args.redis}; {args.rounds} rounds x {args.jobs} jobs")
    print(f"bare RQ jobs, same worker:     {bare_rate:7.1f} jobs/s (median)")
    print(f"bare RQ jobs, plain rq.Worker: {statistics.median(plain):7.1f} jobs/s (median)")
    print(f"enqueue_operation + tracking:  {ours_rate:7.1f} jobs/s (median)")
    print(f"ratio ours / bare:             {ours_rate / bare_rate:7.2f}   (target >= 0.85)")
    print(f"tasks recorded: {succeeded}/{expected} success, {attempts} attempts")

    redis.flushdb()
    get_engine().dispose()
    if not sqlite:
        with admin.begin() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS openvle_bench"))
    return 0 if succeeded == expected else 1


if __name__ == "__main__":
    raise SystemExit(main())
