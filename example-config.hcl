/*

  example configuration for thepusher master

  lists the images available and the client groups they are deployed to

  COPY THIS FILE TO: /path/to/your/images/thePusher-config.hcl
  The /path/to/your/images must be passed to master using -S / --image-storage flag

  Check it before starting the master:
    thepusher check-config /path/to/your/images/thePusher-config.hcl

  Syntax: HCL. Comments start with # or //, or are C-style block comments like this one.
  Strings are "double quoted" (escapes: \n \t \r \" \\ \uXXXX); lists are [a, b].
  Every key is written `key = value`, one per line. Key names are case-sensitive.
  Full reference: docs/config.md

*/

### SETTINGS ##################################################################

# optional top-level settings: `key = value` outside any block. All are in seconds,
# a number greater than 0 and at most 86400; the values below are the defaults, so
# deleting a line changes nothing. Every wait in a deployment round is bounded by
# one of them (docs/protocol.md, "Bounded waits"): a dead or stuck machine turns
# into an ERROR for that client instead of a round that never ends.

# clients must take a round's start within this; a client that does not is ERROR
arm_timeout    = 30

# a client waits this long for its upstream (the master, or the previous host in the
# chain) to connect to it; then it reports "ERROR: no upstream connected"
accept_timeout = 60

# silence this long on a data connection (nothing could be read or written) counts
# as a failure: the client reports "ERROR: stream stalled" and stops forwarding
io_timeout     = 30

# a client that sends no progress report this long during a round is declared
# lost and marked ERROR by the master
report_timeout = 15

# MiB of recently sent data each client keeps, so that when the next client dies it
# can resend what the one after lacks; older bytes are fetched from the master
replay_window  = 32

# not times, these two:
# a shared secret that start/abort/retry/wake and group changes need, from the page,
# the command line (--token) or curl (X-Admin-Token header). "" = none: then such
# calls are accepted only from the master's own machine. At least 12 characters.
admin_token    = ""

# where Wake-on-LAN packets are broadcast: ADDRESS[:PORT], an IPv4 broadcast address
# (the clients' subnet broadcast when the master has several networks)
wake_address   = "255.255.255.255:9"

# who may store images with put-image: addresses and networks such as
# ["10.0.0.0/24", "10.0.1.7"]. [] = only the master's own machine
put_allowed    = []

# when set, put-image must also give it (--upload-token). At least 12 characters.
upload_token   = ""

# shared with the netboot image (create-nbi --secret, or thePusherSecret= on the
# kernel command line): clients then run only tasks this master signed with it, so
# a rogue master on the LAN cannot make them write a disk or run scripts. "" = none
secret         = ""

# a table of the machines' names, vars and MACs (CSV), relative to this file's
# directory, instead of (or beside) host blocks. Its first line names the columns:
# ip (required), name, mac, and any other column is a var, e.g.
#   ip,name,mac,room
#   10.0.4.21,pc-01,52:54:00:4e:9e:21,B12
# "" = none
hosts_file     = ""

# what a machine boots when it network-boots (iPXE asks GET /boot.ipxe, master
# --boot DIR) and no group lists it: "local" = its own disk, "image" = thepusher,
# so that it shows up on the page as unassigned. Listed hosts are imaged when
# something is pending for them, else boot their disk (docs/netboot.md)
unknown_boot   = "local"

### IMAGES ####################################################################

# provide a unique name per image to be deployed ("image" blocks, one label each)
image "ubuntu1604" {

  # REQUIRED. filename of image inside folder specified using -S / --image-storage.
  # A plain file name: no directories, no "..". The file may be missing when the
  # master starts (upload it later with put-image); check-config reports it.
  filename    = "ubuntu1604-sda1.img"

  # optional, default "". comment for personal reference and display on clients
  comment     = "Ubuntu 16.04 LTS"

  # REQUIRED. destination block device on the clients: a whole disk (/dev/sda) or a
  # partition (/dev/sda1). The image is written raw onto it, replacing its contents.
  destination = "/dev/sda1"

  # For whole-disk images, "auto" lets each client choose: the one fixed disk that is
  # not its boot medium (USB sticks, removable and loop devices are left out). Zero or
  # several such disks: that PC is ERROR before anything is written, its disks listed.
  # An optional disk block narrows the choice; every key set must match (docs/disks.md):
  #   destination = "auto"
  #   disk {
  #     min_size   = "100G"          # G, GiB count 1024s; "500 GB" counts 1000s
  #     max_size   = "2TB"
  #     model      = "Samsung SSD*"  # model, serial, wwn: shell patterns, any case
  #     serial     = "S4EW*"
  #     wwn        = "0x5002538e*"
  #     rotational = false           # false: SSDs only; true: spinning disks only
  #     path       = "/dev/nvme*"    # naming a USB or loop disk lets it be chosen
  #   }

  # optional, default "IMG". image types: IMG or TAR, any letter case
  #   IMG: a raw disk or partition image, written to the destination device
  #   TAR: a tar archive extracted into the destination directory (which the
  #        preImage script usually mounts), as in the original tool
  type        = "IMG"

  # optional, default "NONE". compression may be one of NONE | BZ2 | GZIP | XZ
  # (GZ is accepted as another name for GZIP). The image travels compressed;
  # every client decompresses it for its own disk.
  compression = "NONE"

  # optional, default "write". How a client makes sure of its copy before it says DONE:
  #   write:    the SHA-256 of the bytes it wrote equals the image's
  #   readback: after the flush it reads the disk back, past every cache, and that
  #             equals the image's: catches a disk that keeps other bytes than it
  #             was given (costs one more read of the image; not for TAR images)
  verify      = "readback"

  # optional, default false. With a bmap next to the image (IMAGE.bmap), its unmapped
  # ranges are never written: each client leaves its disk's old bytes there. With
  # discard = true a client whose destination is a block device also tells the disk
  # those ranges hold nothing (BLKDISCARD: TRIM on an SSD); a disk that refuses is
  # named once in its log, and the copy goes on. Not for TAR images.
  discard     = true

  # optional, default "". preImage and postImage will be executed using sh -c "...commands..."
  # on every client: preImage before the image is received (if it fails, the client
  # reports ERROR and takes no image), postImage once the written image was verified
  # (a failure is only logged).
  # use -s / --static-content flag to master to let master share scripts etc. via /static.
  # Occurrences of #MASTER# will be replaced by master's IP address; per host also
  # #HOSTNAME#, #IP#, #MAC#, #GROUP#, #IMAGE# and #VAR:name# (from host blocks or the
  # hosts file), which the scripts also find as $THEPUSHER_HOSTNAME, $THEPUSHER_IP, ...
  # $THEPUSHER_MASTER, $THEPUSHER_VAR_NAME. A script naming a var a host lacks is a
  # config error (check-config names the host).
  preImage    = "wget http://#MASTER#:8080/static/preimage-script-1.sh; sh preimage-script-1.sh"
  postImage   = "sleep 5; eject ; reboot"
}

# another example image: compressed, only the required keys plus a few
image "fedora25" {
  filename    = "fedora25.img.bz2"
  comment     = "Fedora 25 2016-12-11"
  destination = "/dev/sda"
  compression = "BZ2"

  # optional, default false. On a disk larger than the image, a GPT's backup always
  # moves to the disk's end (and the old data in the disk's last MiB is wiped);
  # grow = true also makes the last partition end there (the table only: grow its
  # filesystem with resize2fs or ntfsresize at first boot). Not for TAR images.
  grow        = true
}

# an XZ-compressed partition image; a long command fits in a heredoc
# (<<-EOF ... EOF: every line kept, the common indentation removed)
image "home-partition" {
  filename    = "home-sda3.img.xz"
  comment     = "/home partition, empty skeleton"
  destination = "/dev/sda3"
  compression = "XZ"
  preImage    = <<-EOF
    echo "receiving /dev/sda3 from #MASTER#"
    umount /dev/sda3 2>/dev/null || true
  EOF
  postImage   = "e2fsck -fp /dev/sda3"
}

# a whole-disk Debian image that every machine comes up from as itself
image "debian12" {
  filename    = "debian12.img.gz"
  destination = "/dev/sda"
  compression = "GZIP"

  # optional, default none. "linux": once the copy is verified (and before postImage),
  # the client mounts the image's Linux root filesystem and writes the host's name into
  # /etc/hostname (and the 127.0.1.1 line of /etc/hosts), empties /etc/machine-id and
  # replaces the SSH host keys, so no two machines are clones. Every host of a group
  # using it needs a name (host blocks or the hosts file). Not for TAR images; Windows
  # images use sysprep in their own setup instead (docs/disks.md).
  personalize = "linux"

  postImage   = "wget -q -O /dev/null http://#MASTER#:8080/static/imaged/#VAR:room#/#HOSTNAME#; reboot"
}

### CLIENT GROUPS #############################################################

# provide a unique name per client group ("clientgroup" blocks, one label each)
clientgroup "test1" {

  # REQUIRED. the referred image must be defined in this file
  image = "ubuntu1604"

  # REQUIRED. list of hosts (IPv4 or IPv6 addresses) who will receive named image.
  # The order is the chain order: the master streams to the first host, which
  # forwards to the second, and so on. A host may belong to one group only.
  hosts = ["192.168.78.158", "192.168.78.133", "192.168.78.134"]

  # optional, default "all". When a round starts:
  #   "all":    automatically, once every host still to be imaged is ready (has
  #             registered and run preImage). With `wait` below, also earlier.
  #   "manual": only with `thepusher start test1` (or `thepusher retry test1`).
  # A round takes the ready hosts, in `hosts` order; hosts that come later wait for
  # the next round, which starts by the same rule once this one has finished.
  start = "all"

  # optional, no default. A duration ("90s", "5m", "1h" or a number of seconds):
  # also start once this long has passed since the first host became ready, if at
  # least `min_clients` hosts are ready by then. Not with start = "manual".
  wait = "5m"

  # optional, default 1; only together with `wait`, at most the number of hosts.
  min_clients = 2

  # optional, default 0. A host that ended a round in ERROR is taken into up to this
  # many automatic follow-up rounds, once its client has registered again (the netboot
  # script restarts it). After that only `thepusher retry test1` takes it again.
  # Not with start = "manual".
  retries = 1

  # optional, default 1. Split a round's hosts into this many chains of near-equal
  # length (in `hosts` order: the first few make chain 1, and so on), all streamed by
  # the master at once. A chain runs at the pace of its slowest disk or link, so more
  # chains keep a slow or failing machine from holding back the whole room; the
  # master then sends the image K times at once, so give it a link K times the
  # clients' (a 10 GbE master feeding 1 GbE clients). At most the number of hosts.
  chains = 1

  # optional. The MAC address of hosts, for Wake-on-LAN (`thepusher wake test1`, the
  # page's Wake button). Hosts not listed are woken with the MAC they last registered
  # with. Keys must be in `hosts`.
  macs = {
    "192.168.78.158" = "52:54:00:4e:9e:01"
    "192.168.78.133" = "52:54:00:4e:9e:02"
  }
}

# another client group example: one host per line, trailing comma allowed
clientgroup "roomA" {
  image = "fedora25"
  hosts = [
    "192.168.78.140",
    "192.168.78.141",
    "192.168.78.142",
    "fd00::78:143",
  ]
  start = "manual"   # wait for `thepusher start roomA`
}

# a room whose machines get their own names (personalize above needs one per host)
clientgroup "roomB12" {
  image = "debian12"
  hosts = ["10.0.4.21", "10.0.4.22"]
}

### HOSTS #####################################################################

# optional: who each machine is, by its address (as a group's hosts list it). A host
# block for an address in no group is an error, and so are two hosts with one name.
host "10.0.4.21" {

  # the machine's hostname: one label of letters, digits and inner hyphens (at most
  # 63), as /etc/hostname holds it. #HOSTNAME# in scripts; personalize writes it.
  # Without one, #HOSTNAME# is the address with dashes (10-0-4-21).
  name = "pc-01"

  # words for the scripts: #VAR:room# and $THEPUSHER_VAR_ROOM. Names: letters, digits,
  # '_'. Values: letters, digits and . _ , : / @ + - only (they reach sh unquoted).
  vars = { room = "B12", seat = "01" }
}

host "10.0.4.22" {
  name = "pc-02"
  vars = { room = "B12", seat = "02" }

  # optional: this machine's own hints for destination = "auto", each one over its
  # image's disk block (so its image must choose its disk), e.g. for the one PC whose
  # two SSDs nothing else tells apart:
  # disk {
  #   serial = "S4EWNX0R*"
  # }
}
