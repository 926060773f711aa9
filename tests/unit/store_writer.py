"""Writes keys to a store as fast as it can and prints each acknowledged write.

Used by the durability test, which kills this process with SIGKILL mid-stream: every line
printed is a write the store said was done, so it must survive.
Usage: store_writer.py DATA_DIR COUNT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from kade.store import open_store


async def main(data_dir: Path, count: int) -> None:
    store = await open_store(data_dir)
    print("ready", flush=True)
    for i in range(count):
        key = f"durable/{i:06d}"
        revision = await store.put(key, f"value {i}".encode())
        print(revision, key, flush=True)
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
