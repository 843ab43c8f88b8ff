"""A collector that comes back without its store (the database deleted
while a demo streams) must not lock the agent out: the agent goes on as a
new instance, the new store gets its names and every task from then on
(the ends of tasks begun before the loss too, as tasks without their
ENQUEUE; no event is left unmatched), and the demo ends cleanly with
nothing dropped."""
import os
import sqlite3
import subprocess
import time

import twtest


def wait_for_acks(db, demo, timeout=60):
    """Waits until the store holds 600 of the demo's tasks (a tenth) from
    three transactions at least. The collector sends a transaction's ack
    before its writer takes the transaction after next, so the agent has
    been sent an ack of the store that is about to be lost."""
    counts = set()
    deadline = time.monotonic() + timeout
    while len(counts) < 3 or max(counts) < 600:
        assert demo.poll() is None, "the demo ended early"
        assert time.monotonic() < deadline, "no acks from the first store"
        try:
            con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
            try:
                row = con.execute("SELECT count(*) FROM tasks").fetchone()
                counts.add(row[0])
            finally:
                con.close()
        except sqlite3.Error:
            pass  # not created yet
        counts.discard(0)
        time.sleep(0.02)


def main():
    with twtest.tempdir() as d:
        db = os.path.join(d, "store.db")
        first = twtest.Collector(db)
        demo = subprocess.Popen(
            [twtest.BIN, "demo", "--collector", first.url, "--batches", "2000",
             "--rate", "500", "--fail-every", "10", "--service", "lost"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_acks(db, demo)
        first.proc.kill()
        first.proc.wait()
        first.log.close()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        # The same address, an empty store.
        with twtest.Collector(db, port=first.port) as second:
            out, err = demo.communicate(timeout=60)
            assert demo.returncode == 0, (demo.returncode, err)
            assert ", 0 dropped" in out, out  # the demo's summary line
            assert second.stop() == 0, second.output()
            con = sqlite3.connect(db)
            agents = con.execute(
                "SELECT events, ended FROM agents ORDER BY id").fetchall()
            # The old instance id, welcomed once (nothing to send), then
            # the new instance with everything after the loss.
            assert len(agents) == 2, agents
            assert agents[0][0] == 0, agents
            assert agents[1][0] > 5000 and agents[1][1] == 1, agents
            tasks = con.execute("SELECT count(*) FROM tasks").fetchone()[0]
            # Most of the demo's 2000 batches (3 tasks each) came after.
            assert 3000 < tasks < 6000, tasks
            names = {r[0] for r in con.execute("SELECT DISTINCT name FROM tasks")}
            # A task enqueued before the loss and ended after it is stored
            # with what its later events carry (docs/schema.md): batch 0,
            # no name. Only tasks in flight at the loss can be such: at most
            # the demo's 64 batches in flight (--concurrency), 3 tasks each.
            assert names - {"(enqueue not received)"} == {
                "write_notification", "send_email", "write_log"}, names
            orphans = con.execute(
                "SELECT count(*), coalesce(sum(batch = 0 AND (started_at IS "
                "NOT NULL OR finished_at IS NOT NULL)), 0) FROM tasks WHERE "
                "name = '(enqueue not received)'").fetchone()
            assert orphans[0] == orphans[1] <= 64 * 3, orphans
            assert "sequence gap" not in second.output(), second.output()
            print("store lost: agents=%r tasks=%d" % (agents, tasks))


if __name__ == "__main__":
    main()
