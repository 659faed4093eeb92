"""What is in a folder, cheaply: a stat of every entry, no file read."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


def file_signature(folders: Iterable[Path], skip: Iterable[Path] = ()) -> dict[str, tuple[int, ...]]:
    """Every file and folder under `folders` (but `skip`) by its stat: type, size, inode, mtime and ctime.

    Cheap on big data folders (no file is read), and a write cannot hide: user space can reset a file's
    mtime but not its ctime, and a folder's times change when an entry is added, removed or renamed."""
    skipped = {p.resolve() for p in skip}
    roots = sorted({f.resolve() for f in folders}, key=lambda p: len(p.parts))
    sig: dict[str, tuple[int, ...]] = {}
    for root in roots:
        if any(root.is_relative_to(r) for r in skipped) or str(root) in sig:
            continue  # ours, or already walked as part of a parent
        for top, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if Path(top, d) not in skipped]
            for path in [top, *(os.path.join(top, n) for n in dirs + files)]:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                sig[path] = (st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    return sig
