"""The library keeps its internals to itself: every symbol libtaskwatch
defines globally, in the static and in the shared library, is a tw_ name
(internal cross-file ones carry tw__, as libuv's uv__), so a host program
that links it cannot clash with it; the shared library exports the public
API of include/taskwatch.h and nothing else.
"""
import os
import re
import subprocess
import sys

BUILD = os.environ['TASKWATCH_BUILD_ROOT']
SOURCE = os.environ['TASKWATCH_SOURCE_ROOT']
SHARED = os.environ['TASKWATCH_LIBRARY']
STATIC = os.path.join(BUILD, 'agent', 'libtaskwatch.a')


# What a sanitizer's instrumentation adds to every object (ASan's
# one-definition-rule markers such as __odr_asan.NAME) is the compiler's,
# not the library's: the suite also runs in an ASan build.
INSTRUMENTATION = ('__odr_asan', '__asan_', '__ubsan_', '__sanitizer_',
                   '__sancov_')


def defined_globals(args):
    out = subprocess.run(['nm'] + args, check=True, capture_output=True,
                         text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        # "ADDRESS TYPE NAME"; upper-case types are global, U is undefined.
        if len(parts) == 3 and parts[1].isupper() and parts[1] != 'U' \
                and not parts[2].startswith(INSTRUMENTATION):
            names.add(parts[2])
    return names


def public_api():
    with open(os.path.join(SOURCE, 'include', 'taskwatch.h')) as f:
        header = f.read()
    return set(re.findall(r'TW_EXTERN[^;(]*?\b(tw_[a-z0-9_]+)\s*\(', header))


def main():
    failed = False
    static = defined_globals(['-g', '--defined-only', STATIC])
    foreign = sorted(n for n in static if not n.startswith('tw_'))
    if foreign:
        print('static library defines names without tw_: %s' %
              ' '.join(foreign))
        failed = True
    shared = defined_globals(['-D', '--defined-only', SHARED])
    api = public_api()
    if len(api) < 20:
        print('too few public functions found in taskwatch.h: %r' % api)
        failed = True
    extra = sorted(shared - api)
    missing = sorted(api - shared)
    if extra:
        print('shared library exports more than the API: %s' %
              ' '.join(extra))
        failed = True
    if missing:
        print('shared library lacks public functions: %s' %
              ' '.join(missing))
        failed = True
    internal = sorted(n for n in static if n.startswith('tw__'))
    if not internal:
        print('no tw__ internal names in the static library: is it built?')
        failed = True
    if failed:
        sys.exit(1)
    print('symbols: %d public, %d internal tw__, nothing else' %
          (len(api), len(internal)))


if __name__ == '__main__':
    main()
