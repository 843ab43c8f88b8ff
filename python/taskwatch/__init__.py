"""taskwatch: trace background tasks through libtaskwatch.

Starlette / FastAPI::

    import taskwatch
    taskwatch.instrument()

records every BackgroundTasks task of every request (enqueue, start,
finish, failure with traceback, skip after a failure, drop when the request
never ran them) and streams it to the collector named by
TASKWATCH_COLLECTOR. ``TaskwatchMiddleware`` is the explicit form;
``request_scope()`` and ``Batch`` serve code outside Starlette.
"""

from ._native import LibraryNotFound, limits
from .agent import Agent, Batch, Task, get_agent, set_agent
from .starlette import (TaskwatchMiddleware, instrument, request_scope,
                        uninstrument)

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "Batch",
    "LibraryNotFound",
    "Task",
    "TaskwatchMiddleware",
    "get_agent",
    "instrument",
    "limits",
    "request_scope",
    "set_agent",
    "uninstrument",
]
