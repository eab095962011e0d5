#!/bin/sh
# /init of the e2e stand-in for TinyCore. It sets the machine up the way TinyCore's boot
# does (tc-config: proc, sys, devices, modules, lo; dhcp.sh: udhcpc in the background),
# then runs /opt/bootlocal.sh as TinyCore does: create-nbi's overlay put it there, and it
# starts the boot script in the background. TinyCore would then sit at its shell; this
# stand-in powers off once the boot script has ended (a client that succeeded has
# usually powered off already, through the image's postImage).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in virtio_pci virtio_net virtio_blk; do modprobe "$m" || echo "init: modprobe $m failed"; done
ip link set lo up
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
