"""A zip of tasks' pictures (the console's gallery downloads a selection): the images each task
shows, or its grid where it has none, named ``<task id>-<n>.<ext>``, stored as they are (they are
compressed already). Written to a file that spills to disk past 32 MiB, so a large selection
never sits in memory whole."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Sequence
from typing import IO

from pixelmill.storage.base import ObjectNotFound, Storage
from pixelmill.tasks.record import Task

SPILL_BYTES = 32 * 1024 * 1024


def pictures(task: Task) -> list[str]:
    """The keys of what a task shows: its published images, else its grid."""
    if task.result is None:
        return []
    shown = [k for k in task.result.image_keys if k]
    return shown or ([task.result.grid_key] if task.result.grid_key else [])


def zip_tasks(tasks: Sequence[Task], storage: Storage) -> tuple[IO[bytes], int]:
    """The zip, rewound, and how many files it holds. A file storage no longer has is left out."""
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPILL_BYTES)  # noqa: SIM115 - the caller streams, then closes it
    count = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for task in tasks:
            for n, key in enumerate(pictures(task), start=1):
                try:
                    data = storage.get(key)
                except ObjectNotFound:
                    continue
                archive.writestr(f"{task.id}-{n}.{key.rsplit('.', 1)[-1]}", data)
                count += 1
    out.seek(0)
    return out, count
