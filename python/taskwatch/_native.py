"""Finding and loading libtaskwatch.so, and declaring its C signatures.

The library is looked for, in order:

1. ``TASKWATCH_LIBRARY``: the path of the shared library itself (when it
   is set, nothing else is tried);
2. the install prefix: ``lib/`` and ``lib/<multiarch>/`` under the
   interpreter's prefixes, ``/usr/local`` and ``/usr``, then the dynamic
   linker's cache (``ctypes.util.find_library``);
3. a build tree: ``TASKWATCH_BUILD_ROOT``, then any ``build*/`` directory of
   the source checkout this package sits in.

Only the functions the binding uses are declared; every one gets explicit
argument and result types so ctypes never guesses an int for a pointer.
"""

import ctypes
import ctypes.util
import glob
import os
import sys
import sysconfig

LIBRARY_NAME = "libtaskwatch.so"


class LibraryNotFound(OSError):
    """libtaskwatch.so could not be found or loaded."""


def _prefix_candidates():
    prefixes = []
    for prefix in (sys.prefix, sys.base_prefix, "/usr/local", "/usr"):
        if prefix and prefix not in prefixes:
            prefixes.append(prefix)
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for prefix in prefixes:
        for libdir in ("lib", os.path.join("lib", multiarch), "lib64"):
            yield os.path.join(prefix, libdir, LIBRARY_NAME)
    found = ctypes.util.find_library("taskwatch")
    if found:
        yield found


def _build_tree_candidates():
    root = os.environ.get("TASKWATCH_BUILD_ROOT")
    if root:
        yield os.path.join(root, "agent", LIBRARY_NAME)
    source_root = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pattern = os.path.join(source_root, "build*", "agent", LIBRARY_NAME)
    yield from sorted(glob.glob(pattern))


def candidates():
    """Every path the loader tries, in order (for error messages)."""
    explicit = os.environ.get("TASKWATCH_LIBRARY")
    if explicit:
        yield explicit
    yield from _prefix_candidates()
    yield from _build_tree_candidates()


def _declare(lib):
    c_id = ctypes.c_uint64
    p = ctypes.c_void_p
    s = ctypes.c_char_p
    i = ctypes.c_int
    signatures = {
        "tw_version": (s, []),
        "tw_strerror": (s, [i]),
        "tw_config_from_env": (i, [p]),
        "tw_agent_new": (i, [p, ctypes.POINTER(p)]),
        "tw_agent_flush": (i, [p, ctypes.c_uint]),
        "tw_agent_free": (None, [p]),
        "tw_agent_get_stats": (None, [p, p]),
        "tw_agent_refusal": (i, [p, ctypes.c_char_p, ctypes.c_size_t]),
        "tw_refusal_name": (s, [i]),
        "tw_conn_state_name": (s, [i]),
        "tw_batch_begin": (i, [p, s, ctypes.POINTER(c_id)]),
        "tw_task_enqueue": (i, [p, c_id, ctypes.c_uint32, s, i,
                                ctypes.POINTER(c_id)]),
        "tw_task_start": (i, [p, c_id]),
        "tw_task_finish": (i, [p, c_id]),
        "tw_task_fail": (i, [p, c_id, s, s, s]),
        "tw_task_skip": (i, [p, c_id, c_id]),
        "tw_task_drop": (i, [p, c_id, s]),
        "tw_batch_link": (i, [p, c_id, s]),
        "tw_limit_value": (ctypes.c_size_t, [i]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


_lib = None


def load():
    """Returns the loaded library, loading it on first use.

    Raises LibraryNotFound with every path tried when none loads."""
    global _lib
    if _lib is not None:
        return _lib
    tried = []
    explicit = os.environ.get("TASKWATCH_LIBRARY")
    # A library named explicitly is the only one tried: silently loading
    # another would hide the mistake.
    paths = [explicit] if explicit else candidates()
    for path in paths:
        if os.path.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            _lib = _declare(ctypes.CDLL(path))
            return _lib
        except (OSError, AttributeError) as exc:
            tried.append("%s (%s)" % (path, exc))
    raise LibraryNotFound(
        "libtaskwatch.so not found; set TASKWATCH_LIBRARY to its path. "
        "Tried: " + "; ".join(tried))


class Config(ctypes.Structure):
    """struct tw_config from taskwatch.h."""

    _fields_ = [
        ("collector", ctypes.c_char_p),
        ("service", ctypes.c_char_p),
        ("token", ctypes.c_char_p),
        ("buffer_bytes", ctypes.c_size_t),
        ("flush_timeout_ms", ctypes.c_uint),
        ("tls_ca", ctypes.c_char_p),
        ("tls_cert", ctypes.c_char_p),
        ("tls_key", ctypes.c_char_p),
        ("disabled", ctypes.c_size_t),  # uintptr_t
        ("reserved", ctypes.c_void_p * 12),
    ]


class Stats(ctypes.Structure):
    """struct tw_agent_stats from taskwatch.h."""

    _fields_ = [
        ("recorded", ctypes.c_uint64),
        ("dropped", ctypes.c_uint64),
        ("sent", ctypes.c_uint64),
        ("acked", ctypes.c_uint64),
        ("reconnects", ctypes.c_uint64),
        ("buffered_bytes", ctypes.c_uint64),
        ("conn_state", ctypes.c_uint64),
        ("refusal", ctypes.c_uint64),
        ("strings_cut", ctypes.c_uint64),
        ("names_replaced", ctypes.c_uint64),
        ("dropped_batches", ctypes.c_uint64),
        ("dropped_tasks", ctypes.c_uint64),
        ("refused_ring", ctypes.c_uint64),
        ("refused_pressure", ctypes.c_uint64),
        ("refused_backlog", ctypes.c_uint64),
        ("reserved", ctypes.c_uint64 * 7),
    ]


# enum tw_limit (taskwatch.h): which limit tw_limit_value() gives. The
# values themselves are the library's (common/limit.h), read by limits().
_LIMITS = {
    "name": 0,
    "names": 1,
    "name_text": 2,
    "error_type": 3,
    "error_message": 4,
    "error_detail": 5,
    "drop_reason": 6,
    "traceparent": 7,
    "refusal_text": 8,
}

_limits = None


def limits():
    """The agent's limits as the loaded library states them: a dict of
    bytes (names for "names"), e.g. limits()["error_detail"]."""
    global _limits
    if _limits is None:
        lib = load()
        _limits = {name: lib.tw_limit_value(value)
                   for name, value in _LIMITS.items()}
    return _limits

MODE_LOOP = 0
MODE_THREADPOOL = 1
TW_ETIMEDOUT = -7
