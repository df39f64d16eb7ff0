#!/bin/sh
# embed.sh IN OUT: writes the text file IN into OUT as one C string
# literal, a line per line, for #include (the dashboard page).  Used by
# `config` (nginx's configure) and by the Makefile when IN changes.
set -e
{
    echo "/* generated from $(basename "$1") by scripts/embed.sh */"
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/"/' -e 's/$/\\n"/' "$1"
} > "$2.tmp"
mv -f "$2.tmp" "$2"
