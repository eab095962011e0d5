#!/bin/sh
# thepusher on the netboot image. TinyCore runs it from /opt/bootlocal.sh as root, once
# its extensions (python3.9.tcz) are loaded; the e2e test's Debian image runs it from /init.
#
# Kernel command line (wins over what `create-nbi -p/--secret` baked into /opt/thepusher.env):
#   thePusher=MASTER[:PORT]   the master to register with
#   thePusherSecret=SECRET    the master's `secret`: run only tasks it signed
#   putImage=/dev/sdX         upload this disk to the master instead of receiving an image
#                             (putImage=auto: the one fixed disk that is not the boot medium)
#   thePusherUploadToken=T    the master's `upload_token`, for putImage
#   putImageOptions=force,whole  put-image --force (a dirty or hibernated filesystem,
#                             copied whole) and/or --whole (every block, not just used ones)
#
# Everything goes to the console (tty1 on a PC, the serial port with console=ttyS0), so
# whoever stands at the machine sees what it is doing and why it stopped.

PYZ=/opt/thepusher.pyz
ENV_FILE=/opt/thepusher.env
THEPUSHER_MASTER=
THEPUSHER_SECRET=
[ -r "$ENV_FILE" ] && . "$ENV_FILE"

say() { echo "thepusher: $*"; }

# Value of NAME=value on the kernel command line; status 1 when it is not there. The
# last one wins, so words typed at the boot prompt override the configured APPEND line.
bootparam() {
    found=1
    set -f  # a word such as '*' is a word, not the names of files
    for word in $(cat /proc/cmdline); do
        case "$word" in "$1="*) value="${word#*=}"; found=0 ;; esac
    done
    set +f
    [ "$found" -eq 0 ] && printf '%s\n' "$value"
    return "$found"
}

# Forever, with a line every 30 s: a machine without a network cannot do anything
# useful, and it must say so rather than look hung.
wait_for_network() {
    waited=0
    until ip route 2>/dev/null | grep -q '^default'; do
        if [ $((waited % 30)) -eq 0 ] && [ "$waited" -gt 0 ]; then
            say "still no network after ${waited} s (no DHCP lease; is the cable in, is DHCP answering?)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

find_python() {
    for py in python3.9 python3 python3.14; do
        command -v "$py" >/dev/null 2>&1 && { echo "$py"; return 0; }
    done
    return 1
}

# One line a reader sees from across the room.
banner() {
    echo
    echo "================================================================"
    echo "  $*"
    echo "================================================================"
    echo
}

master=$(bootparam thePusher || echo "$THEPUSHER_MASTER")
put_device=$(bootparam putImage || true)
# Never printed, and given to the client in its environment: `ps` shows arguments.
secret=$(bootparam thePusherSecret || printf '%s' "$THEPUSHER_SECRET")

if [ -z "$master" ]; then
    banner "thepusher: NO MASTER KNOWN - nothing to do"
    say "boot with thePusher=MASTER_IP on the kernel command line (pxelinux.cfg APPEND),"
    say "or build the netboot image with: thepusher create-nbi -p MASTER_IP ..."
    exit 1
fi
if [ ! -r "$PYZ" ]; then
    banner "thepusher: $PYZ IS MISSING - the netboot image is incomplete"
    exit 1
fi
if ! py=$(find_python); then
    banner "thepusher: NO PYTHON 3 - is python3.9.tcz in /tmp/builtin/onboot.lst?"
    exit 1
fi
say "python: $(command -v "$py") ($("$py" --version 2>&1))"

if [ -n "$secret" ]; then
    say "master $master (only tasks it signed with the secret are run); waiting for the network"
else
    say "master $master; waiting for the network"
fi
wait_for_network
say "network up: $(ip -4 -o addr show scope global 2>/dev/null | awk '{print $2, $4}' | head -n 1)"

if [ -n "$put_device" ]; then
    upload_token=$(bootparam thePusherUploadToken || true)
    put_options=$(bootparam putImageOptions || true)
    set --
    for word in $(echo "$put_options" | tr ',' ' '); do
        case "$word" in
            force|whole) set -- "$@" "--$word" ;;
            *) banner "thepusher: putImageOptions=$put_options: '$word' is not force or whole"
               exit 1 ;;
        esac
    done
    # put-image itself chooses for putImage=auto, and says which disk it took
    disk=$put_device
    [ "$put_device" = auto ] && disk="the disk putImage=auto chose (named above)"
    if THEPUSHER_UPLOAD_TOKEN="$upload_token" "$py" "$PYZ" put-image -p "$master" -i "$put_device" "$@"; then
        banner "thepusher: DONE - $disk is stored on $master. You may switch this machine off."
        exit 0
    fi
    banner "thepusher: ERROR - $disk was not stored on $master (reason above)"
    exit 1
fi

# A client takes part in one round and shows its own large DONE or ERROR: it exits 0
# once its copy is verified and the image's postImage (e.g. reboot) has run, 1 on ERROR. After an ERROR it registers
# again, so that `thepusher retry` or the group's `retries` can give it another round.
until THEPUSHER_SECRET="$secret" "$py" "$PYZ" client -p "$master"; do
    say "this machine did not get its image (reason above); registering again in 10 s"
    sleep 10
done
