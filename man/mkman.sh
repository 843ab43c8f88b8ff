#!/bin/sh
# Writes one man page with help2man from `taskwatch [COMMAND] --help`, so
# that the page and --help say the same: the options, the synopsis and the
# description come from --help alone; INCLUDE adds what --help has no room
# for (examples, files, see also).
#
# Usage: mkman.sh HELP2MAN TASKWATCH COMMAND|- INCLUDE OUTPUT VERSION
set -eu
help2man=$1 bin=$2 command=$3 include=$4 output=$5 version=$6
if [ "$command" = - ]; then
  command="" page=taskwatch
else
  page=taskwatch-$command
fi
# help2man names the page after the program it runs: run the subcommand
# through a wrapper that carries the page's name.
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$bin" "$command" >"$dir/$page"
chmod +x "$dir/$page"
"$help2man" --no-info --no-discard-stderr --section=1 \
  --version-string="$version" --include="$include" --output="$output" \
  "$dir/$page"
