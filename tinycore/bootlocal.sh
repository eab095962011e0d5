#!/bin/sh
# /opt/bootlocal.sh of the thepusher netboot image (replaces TinyCore's empty one).
# TinyCore runs it as root in the background once extensions are loaded.
/opt/thepusher-boot.sh </dev/null >/dev/console 2>&1 &
