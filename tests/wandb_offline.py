"""Reads an offline W&B run (``offline-run-*/run-*.wandb``) back, for tests.

The file is W&B's record log: a 7-byte header (":W&B", magic, version), then LevelDB-style
32 KiB blocks of chunks (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last),
each record a ``wandb_internal_pb2.Record`` protobuf.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pos, pending = [], HEADER, b""
    while pos + HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < HEADER:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def read_run(run_dir: Path) -> dict[str, Any]:
    """{"history": [{key: value}], "config": {key: value}, "tags": [...], "media": [paths]}."""
    run_file = next(Path(run_dir).glob("run-*.wandb"))
    history, config, tags = [], {}, []
    for r in records(run_file):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
        elif kind == "config":
            config.update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.config.update})
        elif kind == "run":
            tags = list(r.run.tags)
    media = sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).glob("files/media/**/*") if p.is_file())
    return {"history": history, "config": config, "tags": tags, "media": media}
