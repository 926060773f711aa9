"""An acknowledged append survives `kill -9`: a process appends numbered lines in batches and
prints each batch once `append` returned; it is killed mid-way; every line it printed is in
the store once, and a capture that re-sends from its resume point adds none twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from kade.logs.record import LogLine, LogQuery
from kade.logs.store import LogStore

T0 = 1_700_000_000 * 10**9
BATCH = 100

WRITER = f"""
import asyncio, sys
from pathlib import Path
from kade.logs.record import LogLine
from kade.logs.store import LogStore

async def main() -> None:
    store = await LogStore(Path(sys.argv[1])).open()
    n = 0
    while True:
        await store.append([LogLine({T0} + i * 1000, "/shop/web", "shop_web.1", "v1", "n1",
                                    "stdout", f"line {{i}}") for i in range(n, n + {BATCH})])
        n += {BATCH}
        print(n, flush=True)

asyncio.run(main())
"""


def numbered(i: int) -> LogLine:
    return LogLine(T0 + i * 1000, "/shop/web", "shop_web.1", "v1", "n1", "stdout", f"line {i}")


def test_acknowledged_lines_survive_kill_9_and_are_stored_once(tmp_path: Path) -> None:
    acked = 0
    with subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)],
                          stdout=subprocess.PIPE, text=True, env=os.environ.copy()) as proc:
        try:
            assert proc.stdout is not None
            while acked < 30 * BATCH:
                out = proc.stdout.readline()
                assert out, "the writer stopped"
                acked = int(out)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    async def check() -> None:
        store = await LogStore(tmp_path).open()
        try:
            got = await store.query(LogQuery(task="shop_web.1"))
            numbers = [int(ln.line.split()[1]) for ln in got]
            assert numbers == list(range(len(numbers)))  # once each, in order, no gap
            assert len(numbers) >= acked
            # the capture resumes: it re-sends from the resume point's stamp
            resume = await store.resume_point("shop_web.1", "stdout")
            first = (resume.time - T0) // 1000
            assert resume.count == 1 and first == len(numbers) - 1
            await store.append([numbered(i) for i in range(first, first + 50)])
            got = await store.query(LogQuery(task="shop_web.1"))
            assert [int(ln.line.split()[1]) for ln in got] == list(range(first + 50))
        finally:
            await store.close()

    asyncio.run(check())
