"""User-facing errors: bad input is reported in one clear message with exit code 2, never a traceback."""

from __future__ import annotations

import functools
import sys
from typing import Callable

from ski_lvlm.config import ConfigError

__all__ = ["UserError", "cli_entry"]


class UserError(Exception):
    """The user's input is wrong (a missing file, a bad value, an empty split). Recipes exit with 2."""


def cli_entry(prog: str) -> Callable:
    """Wrap a recipe's ``main(argv)`` so ConfigError/UserError print ``prog: error: ...`` and return 2."""

    def deco(main: Callable[..., int | None]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapper(argv: list[str] | None = None) -> int:
            try:
                return int(main(argv) or 0)
            except (ConfigError, UserError) as e:
                print(f"{prog}: error: {e}", file=sys.stderr)
                return 2

        return wrapper

    return deco
