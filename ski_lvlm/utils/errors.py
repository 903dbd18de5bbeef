"""User-facing errors: bad input is reported in one clear message with exit code 2, never a traceback.

Every error the toolkit raises about its *input* (a config, a file, a video, a model folder) derives from
:class:`SkiLvlmError`, and :func:`cli_entry` catches that base once. A recipe therefore lets the library's
own errors (``SkeletonFormatError``, ``StaleCacheError``, ``CorruptExportError``...) travel up unchanged,
and converts to :class:`UserError` only where it adds something: the command-line flag, or what to do next.
The domain errors also keep their builtin parents (``ValueError``, ``RuntimeError``), so code that caught
those before still does.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable

__all__ = ["SkiLvlmError", "UserError", "cli_entry"]


class SkiLvlmError(Exception):
    """Base of the toolkit's input errors; the message names the item (file, line, key) and the fix."""


class UserError(SkiLvlmError):
    """The user's input is wrong (a missing file, a bad value, an empty split). Recipes exit with 2."""


def cli_entry(prog: str) -> Callable:
    """Wrap a recipe's ``main(argv)`` so any :class:`SkiLvlmError` prints ``prog: error: ...`` and returns 2."""

    def deco(main: Callable[..., int | None]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapper(argv: list[str] | None = None) -> int:
            try:
                return int(main(argv) or 0)
            except SkiLvlmError as e:
                print(f"{prog}: error: {e}", file=sys.stderr)
                return 2

        return wrapper

    return deco
