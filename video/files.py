"""Write output files so that a failure never leaves a half-written file under the final name."""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def atomic_output(path: str):
    """Yield a hidden temporary path beside `path`; rename it to `path` if the block succeeds, else delete it."""
    folder, name = os.path.split(os.path.abspath(path))
    partial = os.path.join(folder, f".{name}.partial")
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def write_text(path: str, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_output(path) as partial:
        with open(partial, "w", encoding="utf-8") as file:
            file.write(text)
