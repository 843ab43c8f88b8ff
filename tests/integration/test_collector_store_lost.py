"""A collector that comes back without its store (the database deleted
while a demo streams) must not lock the agent out: the agent goes on as a
new instance, the new store gets its names and every task from then on,
and the demo ends cleanly with nothing dropped."""
import os
import sqlite3
import subprocess
import time

import twtest


def main():
    with twtest.tempdir() as d:
        db = os.path.join(d, "store.db")
        first = twtest.Collector(db)
        demo = subprocess.Popen(
            [twtest.BIN, "demo", "--collector", first.url, "--batches", "2000",
             "--rate", "500", "--fail-every", "10", "--service", "lost"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
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
            assert "dropped 0" in out, out
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
            # 4 s of the demo's 2000 batches (3 tasks each) came after.
            assert 3000 < tasks < 6000, tasks
            names = {r[0] for r in con.execute("SELECT DISTINCT name FROM tasks")}
            assert names == {"write_notification", "send_email", "write_log"}, names
            assert "sequence gap" not in second.output(), second.output()
            print("store lost: agents=%r tasks=%d" % (agents, tasks))


if __name__ == "__main__":
    main()
