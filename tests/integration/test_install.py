"""What `meson install` puts on a machine for operators: the man pages of
taskwatch and each subcommand, the collector's systemd unit and the
sysusers.d entry of its user.

- Every page is installed, and says what `--help` says: every word of the
  command's --help appears in the page, in order, and the page names no
  option that --help does not (taskwatch(1)'s examples: no option that no
  subcommand has).
- The unit is installed, starts the installed binary, passes
  `systemd-analyze verify`, and `systemd-analyze security` rates its
  exposure at most 2.0 ("OK"); the sysusers.d entry creates the user and
  group taskwatch (checked with systemd-sysusers --dry-run)."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

BIN = os.environ["TASKWATCH_BIN"]
BUILD = os.environ["TASKWATCH_BUILD_ROOT"]
COMMANDS = [None, "collector", "top", "query", "demo"]
# systemd-analyze security's scale is 0-100 for 0.0-10.0: 2.0 is "OK".
EXPOSURE_LIMIT = 20

OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*[a-z0-9]|-[a-zA-Z])(?![\w-])")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def install(destdir):
    subprocess.run(["meson", "install", "-C", BUILD, "--destdir", destdir,
                    "--no-rebuild", "--quiet"], check=True,
                   capture_output=True, timeout=300)
    out = subprocess.run(["meson", "introspect", "--installed", BUILD],
                         check=True, capture_output=True, text=True).stdout
    # Source path in the build tree -> installed path (under the prefix).
    return {os.path.basename(dst): destdir + dst
            for dst in json.loads(out).values()}


def deroff(text):
    """The words a man page shows, from its roff source."""
    words = []
    for line in text.splitlines():
        if line.startswith('.\\"'):
            continue
        if line.startswith("."):
            parts = line.split(None, 1)
            if parts[0] in (".TH", ".br", ".PP", ".TP", ".IP", ".nf", ".fi"):
                continue
            line = parts[1].replace('"', "") if len(parts) > 1 else ""
        line = re.sub(r"\\f(\(..|\[[^]]*\]|.)", "", line)
        line = line.replace("\\-", "-").replace("\\(aq", "'")
        line = line.replace("\\,", "").replace("\\/", "").replace("\\&", "")
        line = line.replace("\\e", "\\").replace("\\(co", "(c)")
        words.extend(line.split())
    return words


def help_words(text):
    """The words of --help that help2man keeps: it turns "Usage:" and "or:"
    into the SYNOPSIS, and "Options:"/"Environment:" into headings."""
    words = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in ("Options:", "Environment:"):
            continue
        stripped = re.sub(r"^(Usage|or):\s+", "", stripped)
        words.extend(stripped.split())
    return words


def help_of(command):
    args = [BIN] + ([command] if command else []) + ["--help"]
    return subprocess.run(args, check=True, capture_output=True,
                          text=True).stdout


def check_page(command, path):
    help_text = help_of(command)
    with open(path) as f:
        page = deroff(f.read())
    name = os.path.basename(path)
    # Everything --help says is in the page, in the same order.
    want = help_words(help_text)
    at = 0
    for i, word in enumerate(want):
        try:
            at = page.index(word, at) + 1
        except ValueError:
            raise AssertionError("%s lacks %r of --help (after %r)" %
                                 (name, word, " ".join(want[max(0, i - 6):i])))
    # The same options, no more, no fewer; taskwatch(1)'s examples may use
    # any subcommand's.
    in_help = set(OPTION.findall(help_text))
    in_page = set(OPTION.findall(" ".join(page)))
    allowed = in_help
    if command is None:
        for other in COMMANDS[1:]:
            allowed = allowed | set(OPTION.findall(help_of(other)))
    check(in_help <= in_page and in_page <= allowed,
          "%s: options only in --help %s, only in the page %s" %
          (name, sorted(in_help - in_page), sorted(in_page - allowed)))
    check(len(in_help) >= 2, "%s: no options found in --help" % name)
    return len(want), len(in_help)


def check_unit(files, destdir, mandir):
    unit = files.get("taskwatch-collector.service")
    check(unit and os.path.isfile(unit), "unit not installed: %r" % unit)
    with open(unit) as f:
        text = f.read()
    exec_start = re.search(r"^ExecStart=(\S+) collector ", text, re.M)
    check(exec_start, "no ExecStart running the collector")
    binary = destdir + exec_start.group(1)
    check(os.access(binary, os.X_OK), "ExecStart's %s is not the installed "
          "binary" % exec_start.group(1))
    for setting in ("User=taskwatch", "StateDirectory=taskwatch",
                    "ProtectSystem=strict", "NoNewPrivileges=yes",
                    "--socket-mode 0660"):
        check(setting in text, "unit lacks %s" % setting)
    # systemd-analyze checks the binary and the man page named in
    # Documentation= on the running system: point both into the destdir.
    tmp = tempfile.mkdtemp(prefix="tw-unit-")
    try:
        copy = os.path.join(tmp, "taskwatch-collector.service")
        with open(copy, "w") as f:
            f.write(text.replace("ExecStart=" + exec_start.group(1),
                                 "ExecStart=" + binary))
        env = dict(os.environ, MANPATH=mandir)
        p = subprocess.run(["systemd-analyze", "verify", copy], env=env,
                           capture_output=True, text=True)
        check(p.returncode == 0 and p.stderr.strip() == "",
              "systemd-analyze verify: %d %s" % (p.returncode, p.stderr))
        p = subprocess.run(["systemd-analyze", "security", "--offline=true",
                            "--threshold=%d" % EXPOSURE_LIMIT, copy],
                           capture_output=True, text=True)
        level = re.search(r"Overall exposure level for \S+: (\S+ \S+)",
                          p.stdout)
        check(p.returncode == 0, "exposure above %.1f: %s" %
              (EXPOSURE_LIMIT / 10, level.group(1) if level else p.stdout))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sysusers = files.get("taskwatch.conf")
    check(sysusers and os.path.isfile(sysusers), "sysusers.d entry missing")
    p = subprocess.run(["systemd-sysusers", "--dry-run", sysusers],
                       capture_output=True, text=True)
    check(p.returncode == 0, "systemd-sysusers: %s" % p.stderr)
    said = p.stdout + p.stderr
    check("user 'taskwatch'" in said or "taskwatch" in open(
        "/etc/passwd").read(), "sysusers.d entry creates no user: %s" % said)
    return level.group(1) if level else "?"


def main():
    destdir = tempfile.mkdtemp(prefix="tw-install-")
    try:
        files = install(destdir)
        mandir = None
        for command in COMMANDS:
            name = "taskwatch%s.1" % ("-" + command if command else "")
            path = files.get(name)
            check(path and os.path.isfile(path), "%s not installed" % name)
            mandir = os.path.dirname(os.path.dirname(path))
            words, options = check_page(command, path)
            print("%s: %d words of --help, %d options, all in the page" %
                  (name, words, options))
        level = check_unit(files, destdir, mandir)
        print("unit verified, exposure %s; sysusers entry ok" % level)
    finally:
        shutil.rmtree(destdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
