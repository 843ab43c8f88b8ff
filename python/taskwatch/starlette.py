"""Tracing of Starlette's (hence FastAPI's) background tasks.

``instrument()`` wraps a few methods of the installed Starlette so that
every ``BackgroundTasks``/``BackgroundTask`` is recorded without changing
what it does:

- ``BackgroundTasks.add_task`` records the task's enqueue, with the
  function's qualified name and its mode (``loop`` for async functions,
  ``threadpool`` for sync ones, decided as Starlette decides it);
- ``BackgroundTask.__call__`` records start, then finish or failure (type,
  message, traceback). Sync functions run in Starlette's thread pool as
  before, and their start and finish are recorded from the thread that runs
  them. The exception propagates as it did;
- ``BackgroundTasks.__call__`` records the tasks after a failure as skipped,
  with the failed task as their cause.

One ``BackgroundTasks`` object is one batch. FastAPI hands the same object to
the endpoint and all of its dependencies, so tasks added at any level land
in the endpoint's batch, in the order they were added. The batch label is
the route's method and template (``POST /send-notification/{email}``),
taken from Starlette's routing as the request is dispatched. When the
request carries a W3C ``traceparent`` header, each of its batches records
it, and the collector's OTLP export links the batch's trace to the
request's.

A request boundary - ``Starlette.__call__`` once instrumented, or the
``TaskwatchMiddleware`` for explicit wiring, or ``request_scope()`` outside
ASGI - keeps per-request state in a context variable. When the request ends
and a batch of it never ran (the endpoint raised after add_task and the
client got a 500; sending the response failed; the endpoint returned a
response carrying other background work), its tasks are recorded as dropped
with the reason, e.g. ``status 500 (RuntimeError)``.
"""

import contextlib
import contextvars
import functools
import logging

from . import agent as _agent
from .agent import Batch, error_type_name

_QUEUED = 0

_current = contextvars.ContextVar("taskwatch_request", default=None)
# A request's state is also kept in its ASGI scope, which tells a nested app
# (a Mount) from a new request. The context variable cannot: a task inherits
# the context it is created in, and uvicorn starts a pipelined request's task
# from inside the previous request's send().
_SCOPE_KEY = "taskwatch.request"

_originals = {}
_instrumented_agent = None


def _agent_or_default():
    if _instrumented_agent is not None:
        return _instrumented_agent
    return _agent.get_agent()


class _Request:
    """What taskwatch knows about one request while it is handled."""

    __slots__ = ("agent", "label", "prefix", "batches", "loose", "status",
                 "http", "traceparent")

    def __init__(self, agent, label=None, http=True, traceparent=None):
        self.agent = agent
        self.label = label
        self.traceparent = traceparent
        self.prefix = ""
        self.batches = []
        self.loose = []
        self.status = None
        self.http = http

    def drop_reason(self, exc):
        if not self.http:
            if exc is None:
                return "not run"
            return "%s raised" % error_type_name(type(exc))
        if exc is not None:
            # Without a response started, the server answers 500.
            status = self.status if self.status is not None else 500
            return "status %d (%s)" % (status, error_type_name(type(exc)))
        if self.status is None:
            return "no response"
        if self.status >= 400:
            return "status %d" % self.status
        return "status %d; not attached to the response" % self.status

    def finish(self, exc):
        """Records as dropped every task of this request that never ran."""
        reason = None
        for batch in self.batches:
            if not batch.ran:
                reason = reason or self.drop_reason(exc)
                batch.settle(reason)
        for task in self.loose:
            if "_tw_task" not in task.__dict__:
                reason = reason or self.drop_reason(exc)
                _adopt_task(task, self).batch.settle(reason)


def _task_name(func):
    """The qualified name of what a BackgroundTask will call."""
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__qualname__", None)
    if name is None:
        name = type(func).__qualname__
    return name


def _new_batch(request):
    """A Batch labelled after the current route, registered with the
    request so it can be dropped if it never runs."""
    agent = request.agent if request is not None else _agent_or_default()
    if request is None:
        batch = Batch(None, agent)
    else:
        batch = Batch(request.label, agent, request.traceparent)
    if request is not None:
        request.batches.append(batch)
    return batch


def _enqueue(batch, task):
    traced = batch.enqueue(_task_name(task.func),
                           "loop" if task.is_async else "threadpool")
    task.__dict__["_tw_task"] = traced
    return traced


def _batch_of(tasks_obj):
    """The Batch of a BackgroundTasks object, created on first need."""
    batch = tasks_obj.__dict__.get("_tw_batch")
    if batch is None:
        request = tasks_obj.__dict__.get("_tw_request") or _current.get()
        batch = _new_batch(request)
        tasks_obj.__dict__["_tw_batch"] = batch
    return batch


def _adopt_task(task, request):
    """Gives a stand-alone BackgroundTask a batch of its own."""
    return _enqueue(_new_batch(request), task)


@contextlib.contextmanager
def _quietly():
    """Tracing must never change what the app does: a failure to record
    (the library missing, a bug here) is logged once and otherwise ignored,
    and never replaces the app's own exception."""
    global _reported
    try:
        yield
    except Exception:
        if not _reported:
            _reported = True
            logging.getLogger("taskwatch").exception(
                "taskwatch: recording failed; the app goes on untraced")


_reported = False


# The wrappers. Each calls the original it replaces and only adds records.


def _tasks_init(self, *args, **kwargs):
    _originals["BackgroundTasks.__init__"](self, *args, **kwargs)
    self.__dict__["_tw_request"] = _current.get()
    if self.tasks:
        with _quietly():
            batch = _batch_of(self)
            for task in self.tasks:
                _enqueue(batch, task)


def _task_init(self, *args, **kwargs):
    _originals["BackgroundTask.__init__"](self, *args, **kwargs)
    request = _current.get()
    if request is not None:
        request.loose.append(self)


def _add_task(self, func, *args, **kwargs):
    _originals["BackgroundTasks.add_task"](self, func, *args, **kwargs)
    with _quietly():
        _enqueue(_batch_of(self), self.tasks[-1])


@contextlib.contextmanager
def _recorded(traced):
    """Records a task's start, then its failure or its finish, around the
    run. A recording that fails must neither stop the task nor replace its
    exception, so each one is made quietly."""
    with _quietly():
        traced.start()
    try:
        yield
    except BaseException as exc:
        with _quietly():
            traced.fail(exc)
        raise
    with _quietly():
        traced.finish()


def _run_sync(traced, func, args, kwargs):
    """Runs a sync task in the worker thread, recording from that thread."""
    with _recorded(traced):
        return func(*args, **kwargs)


async def _task_call(self):
    traced = self.__dict__.get("_tw_task")
    if traced is None:
        with _quietly():
            traced = _adopt_task(self, _current.get())
            traced.batch.ran = True
    if traced is None or traced.state != _QUEUED:
        # Run again (unusual): record only the first run.
        return await _originals["BackgroundTask.__call__"](self)
    if self.is_async:
        with _recorded(traced):
            await self.func(*self.args, **self.kwargs)
    else:
        import starlette.background as background

        await background.run_in_threadpool(_run_sync, traced, self.func,
                                           self.args, self.kwargs)


async def _tasks_call(self):
    batch = self.__dict__.get("_tw_batch")
    if batch is None and self.tasks:
        with _quietly():
            batch = _batch_of(self)
            for task in self.tasks:
                if "_tw_task" not in task.__dict__:
                    _enqueue(batch, task)
    if batch is None or batch.ran:
        return await _originals["BackgroundTasks.__call__"](self)
    batch.ran = True
    try:
        await _originals["BackgroundTasks.__call__"](self)
    except BaseException as exc:
        with _quietly():
            batch.settle("%s raised" % error_type_name(type(exc)))
        raise


async def _route_handle(self, scope, receive, send):
    request = _current.get()
    if request is not None:
        request.label = "%s %s%s" % (scope.get("method", "GET"),
                                     request.prefix, self.path)
    await _originals["Route.handle"](self, scope, receive, send)


async def _mount_handle(self, scope, receive, send):
    request = _current.get()
    if request is not None:
        request.prefix += self.path
    await _originals["Mount.handle"](self, scope, receive, send)


def _finish_quietly(request, exc):
    with _quietly():
        request.finish(exc)


def _traceparent(scope):
    """The request's W3C traceparent header, or None. Checked by the
    collector, which links only well-formed ones."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"traceparent":
            return value.decode("latin-1").strip()[:256] or None
    return None


async def _traced_request(app, scope, receive, send, agent):
    """Runs one HTTP request with its taskwatch state; see the module
    docstring. Exceptions propagate unchanged."""
    request = _Request(agent, traceparent=_traceparent(scope))
    scope[_SCOPE_KEY] = request
    token = _current.set(request)

    async def send_and_note(message):
        if message["type"] == "http.response.start":
            request.status = message["status"]
        await send(message)

    try:
        await app(scope, receive, send_and_note)
    except BaseException as exc:
        _finish_quietly(request, exc)
        raise
    else:
        _finish_quietly(request, None)
    finally:
        _current.reset(token)


async def _app_call(self, scope, receive, send):
    original = _originals["Starlette.__call__"]
    if scope["type"] != "http" or _SCOPE_KEY in scope:
        return await original(self, scope, receive, send)

    async def app(scope, receive, send):
        await original(self, scope, receive, send)

    await _traced_request(app, scope, receive, send, _agent_or_default())


class TaskwatchMiddleware:
    """ASGI middleware: the request boundary, for explicit wiring::

        app.add_middleware(taskwatch.TaskwatchMiddleware)
        # or: app = taskwatch.TaskwatchMiddleware(app)

    It installs the BackgroundTasks hooks (as ``instrument()`` does) but
    not the automatic boundary on every Starlette app."""

    def __init__(self, app, agent=None):
        self.app = app
        self.agent = agent
        # Starlette builds middleware on the first request: a missing
        # library must not turn every request into a 500, so it is logged
        # and the app runs untraced.
        with _quietly():
            if self.agent is None:
                self.agent = _agent_or_default()
            _install(boundary=False)

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or self.agent is None or
                _SCOPE_KEY in scope):
            await self.app(scope, receive, send)
            return
        await _traced_request(self.app, scope, receive, send, self.agent)


@contextlib.contextmanager
def request_scope(label=None, agent=None, traceparent=None):
    """The request boundary for code outside ASGI: BackgroundTasks created
    inside the block get the label (and the W3C traceparent, when given),
    and those that never ran are recorded as dropped when the block ends."""
    request = _Request(agent if agent is not None else _agent_or_default(),
                       label, http=False, traceparent=traceparent)
    token = _current.set(request)
    try:
        yield request
    except BaseException as exc:
        request.finish(exc)
        raise
    else:
        request.finish(None)
    finally:
        _current.reset(token)


def _patch(owner, attr, key, replacement):
    if key not in _originals:
        _originals[key] = owner.__dict__[attr]
        setattr(owner, attr, replacement)


def _install(boundary):
    from starlette import background, routing
    from starlette.applications import Starlette

    tasks_cls, task_cls = background.BackgroundTasks, background.BackgroundTask
    _patch(task_cls, "__init__", "BackgroundTask.__init__", _task_init)
    _patch(task_cls, "__call__", "BackgroundTask.__call__", _task_call)
    _patch(tasks_cls, "__init__", "BackgroundTasks.__init__", _tasks_init)
    _patch(tasks_cls, "add_task", "BackgroundTasks.add_task", _add_task)
    _patch(tasks_cls, "__call__", "BackgroundTasks.__call__", _tasks_call)
    _patch(routing.Route, "handle", "Route.handle", _route_handle)
    _patch(routing.Mount, "handle", "Mount.handle", _mount_handle)
    if boundary:
        _patch(Starlette, "__call__", "Starlette.__call__", _app_call)


def instrument(agent=None):
    """Traces every Starlette/FastAPI app of this process. Idempotent.

    agent: the Agent to record with (default: the process-wide agent, made
    from the environment). Raises taskwatch.LibraryNotFound when
    libtaskwatch.so cannot be loaded."""
    global _instrumented_agent
    _instrumented_agent = agent if agent is not None else _agent.get_agent()
    _install(boundary=True)
    return _instrumented_agent


def uninstrument():
    """Restores Starlette's original methods."""
    global _instrumented_agent
    from starlette import background, routing
    from starlette.applications import Starlette

    owners = {
        "BackgroundTask": background.BackgroundTask,
        "BackgroundTasks": background.BackgroundTasks,
        "Route": routing.Route,
        "Mount": routing.Mount,
        "Starlette": Starlette,
    }
    for key, original in list(_originals.items()):
        owner, attr = key.split(".", 1)
        setattr(owners[owner], attr, original)
        del _originals[key]
    _instrumented_agent = None
