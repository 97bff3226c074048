"""What a function implementation gets (Ctx) and how one is declared (Function)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .params import Single
from .state import MoodleState


@dataclass
class Ctx:
    state: MoodleState
    wwwroot: str
    userid: int  # the token's user
    service: tuple[str, ...]  # the functions of the token's service
    pause: Callable[[float], bool]  # sleep; False when the server is stopping meanwhile


@dataclass(frozen=True)
class Function:
    name: str
    component: str  # "moodle" for core, else the plugin (its version is reported by get_site_info)
    params: Single
    handler: Callable[[Ctx, dict[str, Any]], Any]
    returns: bool = True  # False: the function has no return description, the answer is `null`
    write: bool = False  # changes data (decides which database error an injected fault shows)
    locked: bool = True  # run entirely under the state lock; a slow function takes it itself in steps
