"""The agent handle and the low-level trace calls, for any Python code.

``Agent`` wraps a ``tw_agent``: creating one starts the library's sender
thread, which streams events to the collector; ``close()`` flushes and stops
it (the process-wide default agent is closed at exit). ``Batch`` and
``Task`` are thin objects over the trace calls (tw_batch_begin,
tw_task_enqueue, tw_task_start/finish/fail/skip/drop): they record, they
never run anything, and they never raise because of tracing - a recording
the agent had to drop is counted by the agent, not reported to the caller.

A ``Batch`` is also a context manager for code outside Starlette::

    with taskwatch.Batch("nightly cleanup") as batch:
        purge = batch.enqueue("purge_sessions")
        report = batch.enqueue("send_report", mode="loop")
        with purge:              # start, then finish or fail
            purge_sessions()
        with report:
            send_report()

On leaving the block, a task never started is recorded as skipped when an
earlier task of the batch failed, and as dropped otherwise (the reason is
the exception leaving the block, or "not run"). Exceptions always propagate.
"""

import atexit
import ctypes
import os
import sys
import threading
import traceback

from . import _native

_QUEUED, _RUNNING, _DONE = 0, 1, 2


def _encode(text, limit=None):
    """text as UTF-8 for the library. With a limit (a key of
    _native.limits(), in bytes), a longer text is first trimmed to one
    character more than the limit: every character is at least a byte, so
    the library still sees the text is over its limit and cuts it at a
    character boundary, marks and counts it, and encoding a huge string
    costs no more than encoding that."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = str(text)
    if limit is not None:
        keep = _native.limits()[limit] + 1
        if len(text) > keep:
            text = text[:keep]
    return text.encode("utf-8", "replace")


def _default_service():
    """The service name when neither the caller nor TASKWATCH_SERVICE gives
    one: the script's name, or the package's for ``python -m package``."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "python"
    base = os.path.basename(argv0)
    if base == "__main__.py":
        base = os.path.basename(os.path.dirname(argv0)) or base
    if base.endswith(".py"):
        base = base[:-3]
    return base or "python"


def error_type_name(exc_type):
    """``ValueError`` for builtins, ``module.Qualname`` for the rest."""
    module = getattr(exc_type, "__module__", None)
    name = getattr(exc_type, "__qualname__", None) or exc_type.__name__
    if module in (None, "builtins", "__main__"):
        return name
    return "%s.%s" % (module, name)


class Agent:
    """One taskwatch agent (``tw_agent``) in this process.

    Settings default to the environment (TASKWATCH_COLLECTOR,
    TASKWATCH_SERVICE, TASKWATCH_TOKEN, ...); keyword arguments override it.
    Every method is thread-safe; recording methods never block. close()
    waits for the native calls already in progress (each is short; a
    flush() waits up to its timeout) before it frees the agent, and every
    call after it is a no-op, so no thread ever passes a freed handle.
    """

    def __init__(self, collector=None, service=None, token=None,
                 buffer_bytes=0, flush_timeout_ms=0):
        lib = _native.load()
        cfg = _native.Config()
        lib.tw_config_from_env(ctypes.byref(cfg))
        # Keep the encoded strings alive until tw_agent_new() has copied
        # them.
        keep = []
        for field, value in (("collector", collector), ("service", service),
                             ("token", token)):
            if value is not None:
                keep.append(_encode(value))
                setattr(cfg, field, keep[-1])
        if cfg.service is None:
            keep.append(_encode(_default_service()))
            cfg.service = keep[-1]
        if buffer_bytes:
            cfg.buffer_bytes = buffer_bytes
        if flush_timeout_ms:
            cfg.flush_timeout_ms = flush_timeout_ms
        handle = ctypes.c_void_p()
        err = lib.tw_agent_new(ctypes.byref(cfg), ctypes.byref(handle))
        if err != 0:
            raise OSError("taskwatch: cannot create the agent: %s"
                          % lib.tw_strerror(err).decode())
        self._lib = lib
        self._handle = handle.value
        # Guards _handle and _inflight: a call takes the handle and counts
        # itself in under the lock, and close() frees the agent only once
        # the count is back to zero.
        self._lock = threading.Condition(threading.Lock())
        self._inflight = 0
        # Bound C functions, so the recording path does no lookups.
        self._begin = lib.tw_batch_begin
        self._enqueue = lib.tw_task_enqueue
        self._start = lib.tw_task_start
        self._finish = lib.tw_task_finish
        self._fail = lib.tw_task_fail
        self._skip = lib.tw_task_skip
        self._drop = lib.tw_task_drop
        self._link = lib.tw_batch_link

    @property
    def closed(self):
        return self._handle is None

    def _call(self, fn, *args):
        """fn(handle, *args) unless the agent is closed (then None)."""
        with self._lock:
            handle = self._handle
            if handle is None:
                return None
            self._inflight += 1
        try:
            return fn(handle, *args)
        finally:
            with self._lock:
                self._inflight -= 1
                if self._inflight == 0 and self._handle is None:
                    self._lock.notify_all()

    def flush(self, timeout=5.0):
        """Waits until everything recorded so far is stored by the
        collector. Returns True when it was, False on timeout."""
        return self._call(self._lib.tw_agent_flush,
                          int(timeout * 1000)) == 0

    def stats(self):
        """The agent's counters as a dict (recorded, dropped, sent, acked,
        reconnects, buffered_bytes, conn_state and refusal as numbers
        (connection() names them), strings_cut, names_replaced, and
        dropped_batches and dropped_tasks: the batches and tasks refused
        whole because the buffer was full, which the collector stores on
        the agent's row; refused_ring, refused_pressure and
        refused_backlog: the refused batches by the rule that refused
        them, as taskwatch.h says)."""
        out = _native.Stats()
        self._call(self._lib.tw_agent_get_stats, ctypes.byref(out))
        return {name: getattr(out, name) for name, _ in out._fields_
                if name != "reserved"}

    def connection(self):
        """Whether the agent is connected, and why it last could not
        deliver, as a dict: state ("connecting", "connected", "waiting to
        reconnect", "stopped"), refusal (None, or e.g. "authentication
        failed", "collector unreachable") and reason (the line saying
        why, e.g. the collector's own words or "connection refused
        (tcp://127.0.0.1:7460)"; "" when there is none). A closed agent is
        "stopped"."""
        out = _native.Stats()
        buf = ctypes.create_string_buffer(_native.limits()["refusal_text"])
        code = self._call(self._lib.tw_agent_refusal, buf, len(buf))
        if code is None:
            return {"state": "stopped", "refusal": None, "reason": ""}
        self._call(self._lib.tw_agent_get_stats, ctypes.byref(out))
        name = self._lib.tw_conn_state_name(int(out.conn_state))
        return {"state": name.decode(),
                "refusal": (self._lib.tw_refusal_name(code).decode()
                            if code else None),
                "reason": buf.value.decode("utf-8", "replace")}

    def close(self):
        """Flushes (up to the configured timeout), says goodbye to the
        collector and frees the agent, once the calls other threads are in
        have returned. Later recordings are ignored."""
        with self._lock:
            handle, self._handle = self._handle, None
            while self._inflight:
                self._lock.wait()
        if handle is not None:
            self._lib.tw_agent_free(handle)

    # Low-level recording. Each returns quickly and ignores failures: the
    # agent counts what it had to drop and reports the count itself.

    def batch_begin(self, label=None):
        """Records a new batch; returns its id (0 when the agent is
        closed)."""
        out = ctypes.c_uint64(0)
        self._call(self._begin, _encode(label, "name"), ctypes.byref(out))
        return out.value

    def batch_link(self, batch, traceparent):
        """Records the W3C traceparent of the request that made the batch;
        the collector's OTLP export links the batch's trace to it."""
        self._call(self._link, batch, _encode(traceparent, "traceparent"))

    def task_enqueue(self, batch, position, name, mode):
        out = ctypes.c_uint64(0)
        self._call(self._enqueue, batch, position, _encode(name, "name"),
                   mode, ctypes.byref(out))
        return out.value

    def task_start(self, task):
        self._call(self._start, task)

    def task_finish(self, task):
        self._call(self._finish, task)

    def task_fail(self, task, error_type, message, detail):
        self._call(self._fail, task, _encode(error_type, "error_type"),
                   _encode(message, "error_message"),
                   _encode(detail, "error_detail"))

    def task_fail_exc(self, task, exc):
        """task_fail() with the type, message and traceback of exc."""
        if self._handle is None:
            return
        try:
            message = str(exc)
        except Exception:
            message = "<str() failed>"
        detail = "".join(traceback.format_exception(
            type(exc), exc, exc.__traceback__))
        self.task_fail(task, error_type_name(type(exc)), message, detail)

    def task_skip(self, task, cause):
        self._call(self._skip, task, cause)

    def task_drop(self, task, reason):
        self._call(self._drop, task, _encode(reason, "drop_reason"))


_default = None
_default_lock = threading.Lock()


def get_agent():
    """The process-wide agent, created from the environment on first use and
    closed (flushed) at interpreter exit."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                agent = Agent()
                atexit.register(agent.close)
                _default = agent
    return _default


def set_agent(agent):
    """Makes agent the process-wide agent; returns the previous one (not
    closed)."""
    global _default
    with _default_lock:
        previous, _default = _default, agent
    return previous


class Task:
    """A task recorded in a Batch. As a context manager it records start on
    entry and finish or fail (with the exception's type, message and
    traceback) on exit; the exception propagates."""

    __slots__ = ("batch", "id", "position", "name", "state")

    def __init__(self, batch, task_id, position, name):
        self.batch = batch
        self.id = task_id
        self.position = position
        self.name = name
        self.state = _QUEUED

    def start(self):
        self.state = _RUNNING
        self.batch.agent.task_start(self.id)

    def finish(self):
        self.state = _DONE
        self.batch.agent.task_finish(self.id)

    def fail(self, exc=None, error_type=None, message=None, detail=None):
        """Records failure from exc, or from the strings given."""
        self.state = _DONE
        self.batch.failed = self.batch.failed or self
        if exc is not None:
            self.batch.agent.task_fail_exc(self.id, exc)
        else:
            self.batch.agent.task_fail(self.id, error_type, message, detail)

    def skip(self, cause):
        self.state = _DONE
        self.batch.agent.task_skip(self.id, cause.id)

    def drop(self, reason=None):
        self.state = _DONE
        self.batch.agent.task_drop(self.id, reason)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            self.finish()
        else:
            self.fail(exc)
        return False


class Batch:
    """A batch of tasks: ``tw_batch_begin`` on creation, one ``Task`` per
    ``enqueue``. See the module docstring for the context-manager form.
    traceparent: the W3C ``traceparent`` header of the request the batch
    belongs to, if any (its trace and the batch's are then linked)."""

    __slots__ = ("agent", "id", "label", "tasks", "failed", "ran")

    def __init__(self, label=None, agent=None, traceparent=None):
        self.agent = agent if agent is not None else get_agent()
        self.label = label
        self.id = self.agent.batch_begin(label)
        if traceparent and self.id:
            self.agent.batch_link(self.id, traceparent)
        self.tasks = []
        self.failed = None
        self.ran = False

    def enqueue(self, name, mode="threadpool"):
        """Records a task added at the next position; mode is "loop" or
        "threadpool"."""
        code = _native.MODE_LOOP if mode == "loop" else _native.MODE_THREADPOOL
        position = len(self.tasks)
        task = Task(self, self.agent.task_enqueue(self.id, position, name,
                                                  code), position, name)
        self.tasks.append(task)
        return task

    def settle(self, reason="not run"):
        """Records every task not yet started as skipped (after a failure)
        or dropped with reason."""
        for task in self.tasks:
            if task.state != _QUEUED:
                continue
            if self.failed is not None:
                task.skip(self.failed)
            else:
                task.drop(reason)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.settle("not run" if exc is None else
                    "%s raised" % error_type_name(exc_type))
        return False

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        return self.__exit__(exc_type, exc, tb)
