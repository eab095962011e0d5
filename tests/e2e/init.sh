#!/bin/sh
# /init of the e2e stand-in for TinyCore. It sets the machine up the way TinyCore's boot
# does, in tc-config's order (proc, sys, devices, modules, lo; tce-setup: the extensions
# in /tmp/builtin/onboot.lst; dhcp.sh: udhcpc in the background), then runs /opt/bootlocal.sh as
# TinyCore does: create-nbi's overlay put it there, and it starts the boot script in the
# background. TinyCore would then sit at its shell; this stand-in powers off once the
# boot script has ended (a client that succeeded has usually powered off already,
# through the image's postImage).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in virtio_pci virtio_net virtio_blk loop squashfs; do
    modprobe "$m" || echo "init: modprobe $m failed"
done
ip link set lo up

# An extension the way tce-load -i -b installs one from /tmp/builtin: the extensions its
# .tcz.dep names first, then the squashfs loop-mounted read-only on /tmp/tcloop/NAME and
# every file in it linked into / (directories made as needed; a file that exists is
# kept, and cp says so); then its startup script /usr/local/tce.installed/NAME is run
# if it brings one, else that file is created to mark it loaded.
BUILTIN=/tmp/builtin/optional
load_extension() {
    local name="${1%.tcz}" dep
    [ -e "/usr/local/tce.installed/$name" ] && return 0
    if [ -r "$BUILTIN/$name.tcz.dep" ]; then
        for dep in $(cat "$BUILTIN/$name.tcz.dep"); do load_extension "$dep"; done
    fi
    mkdir -p "/tmp/tcloop/$name" /usr/local/tce.installed
    if ! mount -t squashfs -o loop,ro "$BUILTIN/$name.tcz" "/tmp/tcloop/$name"; then
        echo "init: cannot mount $BUILTIN/$name.tcz"
        return 1
    fi
    cp -as "/tmp/tcloop/$name"/* /
    if [ -s "/usr/local/tce.installed/$name" ]; then
        sh "/usr/local/tce.installed/$name"
    else
        touch "/usr/local/tce.installed/$name"
    fi
    return 0
}
if [ -r /tmp/builtin/onboot.lst ]; then
    for ext in $(cat /tmp/builtin/onboot.lst); do load_extension "$ext"; done
    ldconfig  # the loader learns the extensions' /usr/local/lib
fi

# dhcp.sh, which tc-config starts in the background after tce-setup: the boot script
# waits for the lease.
for dev in $(ls /sys/class/net); do
    case "$dev" in
        eth*) ip link set "$dev" up
              udhcpc -b -i "$dev" -s /etc/udhcpc.script -p "/run/udhcpc.$dev.pid" >/dev/null 2>&1 & ;;
    esac
done

/opt/bootlocal.sh
sleep 1
# Debian's busybox has no pgrep; the [.] keeps this grep from matching its own command line.
while grep -qs 'thepusher-boot[.]sh' /proc/[0-9]*/cmdline; do sleep 1; done
echo "init: the boot script has ended; powering off"
sync
poweroff -f
