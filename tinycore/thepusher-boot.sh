#!/bin/sh
# Started from /opt/bootlocal.sh on the netboot image: wait for the network, find the
# master (kernel command line thePusher=IP overrides a master baked in at build time),
# and run the client on the console. `make nbi` (issue 4) installs this script.

PYZ=/opt/thepusher.pyz
BAKED_MASTER="${THEPUSHER_MASTER:-}"

param() {  # value of NAME=value on the kernel command line
    for word in $(cat /proc/cmdline); do
        case "$word" in "$1="*) echo "${word#*=}"; return 0 ;; esac
    done
    return 1
}

master=$(param thePusher || echo "$BAKED_MASTER")
if [ -z "$master" ]; then
    echo "thepusher: no master known. Boot with thePusher=MASTER_IP on the kernel command line." >&2
    exit 1
fi

# DHCP on TinyCore runs in the background: wait up to 60 s for a default route.
i=0
while ! ip route 2>/dev/null | grep -q '^default' && [ $i -lt 60 ]; do
    sleep 1; i=$((i + 1))
done

# A client takes part in one round: it exits 0 once its copy is verified (and postImage,
# e.g. reboot, has run), 1 on ERROR. After an ERROR it registers again, so that
# `thepusher retry` or the group's `retries` can give this machine another round.
for py in python3.9 python3 python3.14; do
    command -v "$py" >/dev/null 2>&1 || continue
    until "$py" "$PYZ" client -p "$master"; do
        echo "thepusher: this machine did not get its image; registering again in 10 s" >&2
        sleep 10
    done
    exit 0
done
echo "thepusher: no python3 found (is python3.9.tcz loaded?)" >&2
exit 1
