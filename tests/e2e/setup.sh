#!/bin/sh
# `make e2e`, step 1 (Debian 12, as root): install QEMU, OVMF, iPXE, busybox, squashfs-tools
# (mksquashfs), binutils (strip) and dnsmasq, and
# download the kernel package the netboot image is built from into DEBS_DIR. Runs
# `apt-get update` only when something is missing or the package lists are too old.
set -eu
DEBS_DIR=${1:?usage: setup.sh DEBS_DIR}
PACKAGES="qemu-system-x86 ipxe-qemu ipxe ovmf grub-efi-amd64-bin mtools busybox-static
          squashfs-tools binutils dnsmasq-base util-linux iproute2"

updated=
update() {
    [ -n "$updated" ] && return 1
    apt-get update -qq
    updated=1
}

if ! dpkg -s $PACKAGES >/dev/null 2>&1; then
    update || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES
fi

# The ABI name (linux-image-6.1.0-NN-amd64) changes with every Debian point release:
# ask apt which one linux-image-amd64 stands for today.
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
kernel=$(kernel_package)
if [ -z "$kernel" ]; then
    update
    kernel=$(kernel_package)
fi
[ -n "$kernel" ] || { echo "setup.sh: apt knows no linux-image-amd64" >&2; exit 1; }

if ! ls "$DEBS_DIR/${kernel}_"*.deb >/dev/null 2>&1; then
    rm -rf "$DEBS_DIR"
    mkdir -p "$DEBS_DIR"
    # Stale lists name a version the mirror no longer has: update once and try again.
    until (cd "$DEBS_DIR" && apt-get download -q -o APT::Sandbox::User=root "$kernel"); do
        update || exit 1
        kernel=$(kernel_package)
    done
fi
echo "e2e setup: $(ls "$DEBS_DIR")"
