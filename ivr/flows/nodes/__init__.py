"""Built-in node types, one module each; importing this package registers them all."""

from . import answer, branch, collect, goto, hangup, language, menu, play, set, subflow, tasks

__all__ = [
    "answer",
    "branch",
    "collect",
    "goto",
    "hangup",
    "language",
    "menu",
    "play",
    "set",
    "subflow",
    "tasks",
]
