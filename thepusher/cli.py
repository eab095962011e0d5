"""Command line: one subcommand per role, flags named as in the original tool."""

import argparse
import json
import logging
import os
import signal
import sys
from typing import List, Optional

from thepusher import __version__


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


def master_address(text: str) -> str:
    """argparse type of every -p: the master's address, checked now (one usage line)
    rather than when the first request goes out (a traceback)."""
    from thepusher.client.master_link import split_host_port

    try:
        split_host_port(text, 8080)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def tcp_port(text: str) -> int:
    """argparse type of a port to listen on: 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0 to 65535)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thepusher",
        description="Stream one disk image along a chain of machines; every copy verified.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("--version", action="version", version=f"thepusher {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # -v also after the command (`thepusher status -v`); SUPPRESS keeps a -v given
    # before it when none follows.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="log debug details")

    def command(name: str, **kw) -> argparse.ArgumentParser:
        kw.setdefault("description", kw["help"][0].upper() + kw["help"][1:] + ".")
        return sub.add_parser(name, parents=[after], **kw)

    p = command("master", help="serve images, coordinate rounds, show the status page")
    p.add_argument("-S", "--image-storage", required=True, metavar="IMAGE_DIR",
                   help="directory holding the images and thePusher-config.hcl")
    p.add_argument("-s", "--static-content", metavar="STATIC_DIR",
                   help="directory served under /static/ (pre/post scripts)")
    p.add_argument("--boot", metavar="DIR",
                   help="create-nbi's output directory: serve it under /boot/ and decide "
                        "per machine at GET /boot.ipxe what it boots (docs/netboot.md)")
    p.add_argument("-l", "--listen", default=":8080", metavar="[IP]:PORT",
                   help="HTTP address (default :8080, every interface)")
    p.add_argument("-c", "--config", metavar="FILE",
                   help="config file (default IMAGE_DIR/thePusher-config.hcl)")
    p.set_defaults(func=cmd_master)

    p = command("client", help="register with the master, receive, write and forward")
    p.add_argument("-p", "--master", required=True, type=master_address, metavar="MASTER[:PORT]",
                   help="the master's address (port 8080 unless given)")
    p.add_argument("--bind", metavar="IP",
                   help="source and listen address; the master knows clients by it")
    p.add_argument("--destination", metavar="PATH",
                   help="write here instead of the image's destination (file or block device; "
                        "'auto': the one disk the image's disk hints leave, docs/disks.md)")
    p.add_argument("--data-port", type=tcp_port, default=8081, metavar="PORT",
                   help="TCP port for the upstream hop to connect to (default 8081; 0 = any)")
    p.add_argument("--secret", metavar="SECRET",
                   help="the master's `secret`: run only tasks it signed (default: "
                        "$THEPUSHER_SECRET, which, unlike this flag, `ps` does not show)")
    p.set_defaults(func=cmd_client)

    p = command("status", help="print the master's groups and clients",
                description="Print the master's images, groups and clients as a table. Exit "
                "status: 0 when every host of every group whose last round has finished is "
                "DONE (or no round has finished yet), 2 when some are not, 1 when none is or "
                "the master cannot be reached.")
    p.add_argument("-p", "--master", default="127.0.0.1", type=master_address, metavar="MASTER[:PORT]",
                   help="the master's address (default 127.0.0.1, port 8080 unless given)")
    p.add_argument("--json", action="store_true", help="print the raw /api/status JSON")
    p.set_defaults(func=cmd_status)

    for name, what in (("start", "start a round now with every ready host of GROUP"),
                       ("retry", "a follow-up round for GROUP's ready hosts that failed or came late"),
                       ("abort", "stop GROUP's running round now (it then waits for start/retry)"),
                       ("wake", "send Wake-on-LAN packets to GROUP's hosts with a known MAC")):
        p = command(name, help=what)
        p.add_argument("group", metavar="GROUP", help="a clientgroup of the master's config")
        _admin_options(p)
        p.set_defaults(func=cmd_group, action=name)

    p = command("reimage", help="what hosts boot at their next network boot (GET /boot.ipxe)",
                description="Mark groups or hosts to be imaged at their next network boot "
                "(or, with --put, to upload a disk once); with --clear, remove the marks and "
                "let the master decide by the groups' rounds. Needs master --boot "
                "(docs/netboot.md).")
    p.add_argument("targets", nargs="+", metavar="GROUP_OR_HOST",
                   help="clientgroup names and host addresses")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--put", metavar="DEVICE",
                      help="upload DEVICE (a /dev/ path, or auto) at the next boot instead, once")
    what.add_argument("--clear", action="store_true", help="remove the marks")
    _admin_options(p)
    p.set_defaults(func=cmd_reimage)

    p = command("check-config", help="parse a config and print it, or every error in it")
    p.add_argument("file", metavar="FILE", help="the config file, e.g. IMAGE_DIR/thePusher-config.hcl")
    p.add_argument("-S", "--image-storage", metavar="IMAGE_DIR",
                   help="where the image files are (default: the config's directory)")
    p.set_defaults(func=cmd_check_config)

    p = command("create-nbi", help="build the netboot image (PXE, iPXE, ISO) from TinyCore files")
    p.add_argument("-p", "--master", type=master_address, metavar="MASTER[:PORT]",
                   help="bake in this master (thePusher= on the kernel command line still wins)")
    p.add_argument("--tinycore", required=True, metavar="DIR",
                   help="cache with vmlinuz64, corepure64.gz, python3.9.tcz and its dependencies")
    p.add_argument("--out", required=True, metavar="DIR", help="where the boot files go")
    p.add_argument("--download", metavar="URL",
                   help="first fetch what is missing from a mirror, e.g. "
                        "http://tinycorelinux.net/15.x/x86_64 (md5-checked)")
    p.add_argument("--append", default="", metavar="WORDS",
                   help="more kernel command line words for every boot config, "
                        "e.g. 'console=ttyS0,115200'")
    p.add_argument("--pyz", metavar="FILE",
                   help="thepusher.pyz to put in the image (default: the one running)")
    p.add_argument("--secret", metavar="SECRET",
                   help="bake in the master's `secret` (clients then run only tasks it signed; "
                        "thePusherSecret= on the kernel command line still wins; "
                        "default: $THEPUSHER_SECRET)")
    p.add_argument("--ipxe", metavar="DIR",
                   help="copy iPXE's snponly.efi, ipxe.efi and undionly.kpxe from DIR (UEFI machines "
                        "netboot through them; default: /usr/lib/ipxe, Debian's ipxe package)")
    p.set_defaults(func=cmd_create_nbi)

    p = command("put-image", help="upload a disk or image file to the master's image directory",
                       description="Stream the used blocks of DEVICE_OR_FILE to the master, which "
                       "stores them as a new image (never over an existing one) once its SHA-256 "
                       "checks out; the free blocks are holes in it, listed in its NAME.bmap.")
    p.add_argument("-p", "--master", required=True, type=master_address, metavar="MASTER[:PORT]",
                   help="the master's address (port 8080 unless given)")
    p.add_argument("-i", "--input", required=True, metavar="DEVICE_OR_FILE",
                   help="what to upload: a disk (/dev/sda), an image file, a pipe, or 'auto': "
                        "the one fixed disk that is not the boot medium")
    p.add_argument("-n", "--name", metavar="NAME",
                   help="file name on the master (default: the input's base name, e.g. sda, "
                   "plus .gz/.bz2/.xz when compressing)")
    p.add_argument("--compress", choices=("gz", "bz2", "xz"), metavar="FORMAT",
                   help="compress on the fly on every CPU core: gz (quickest), bz2 or xz (preset 1)")
    p.add_argument("--upload-token", default=os.environ.get("THEPUSHER_UPLOAD_TOKEN", ""),
                   metavar="TOKEN", help="the config's upload_token, when the master has one "
                   "(default: $THEPUSHER_UPLOAD_TOKEN)")
    _capture_options(p)
    p.set_defaults(func=cmd_put_image)

    p = command("compress", help="compress an image file or a disk with every core",
                       description="Write IMG compressed, as streams made in parallel and "
                       "concatenated (bzip2 -d, gzip -d, xz -d read the file as usual), with "
                       "the digest sidecar the master uses instead of hashing it again. An "
                       "existing file is never overwritten; an interrupted run leaves no output.")
    p.add_argument("image", metavar="IMG", help="image file, or a disk (/dev/sdX) with -o")
    p.add_argument("--format", choices=("bz2", "gz", "xz"), default="bz2",
                   help="bz2 (default), gz (quickest, largest) or xz (smallest, slowest)")
    p.add_argument("--level", type=int, metavar="N",
                   help="compression level, as the format's tool has it (default: bz2 9, gz 6, xz 6)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="worker threads (default 0: one per CPU core)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="the compressed file (default: IMG plus .bz2, .gz or .xz)")
    _capture_options(p)
    p.set_defaults(func=cmd_compress)

    p = command("demo", help="a whole round on this machine: master + N local clients")
    p.add_argument("--clients", type=int, default=3, metavar="N", help="number of clients (default 3)")
    p.add_argument("--size", default="256M", help="image size, e.g. 64M, 1G (default 256M)")
    p.add_argument("--dir", metavar="DIR", help="work directory (default: a temporary one)")
    p.add_argument("--keep", action="store_true",
                   help="keep the master and its status page up until Ctrl-C")
    p.add_argument("--port", type=tcp_port, default=8080, help="master HTTP port (default 8080)")
    p.set_defaults(func=cmd_demo)
    return parser


def _capture_options(p: argparse.ArgumentParser) -> None:  # put-image and compress
    p.add_argument("--whole", action="store_true", help="read every block, also those its "
                   "filesystems do not use (default: only the used ones; the rest stays free)")
    p.add_argument("--force", action="store_true", help="capture a source mounted read-write, "
                   "or whose filesystem needs recovery, is dirty, hibernated or BitLocker")


def _admin_options(p: argparse.ArgumentParser) -> None:
    """-p and --token of the commands that steer the master (admin calls)."""
    p.add_argument("-p", "--master", default="127.0.0.1", type=master_address, metavar="MASTER[:PORT]",
                   help="the master's address (default 127.0.0.1, port 8080 unless given)")
    p.add_argument("--token", default=os.environ.get("THEPUSHER_ADMIN_TOKEN", ""),
                   help="the config's admin_token (default: $THEPUSHER_ADMIN_TOKEN); "
                        "without one, run this on the master's host")


def cmd_master(args) -> int:
    from thepusher.config.model import ConfigError
    from thepusher.master import server
    from thepusher.units import count

    log = logging.getLogger("thepusher.master")
    try:
        srv = server.build(args.image_storage, args.static_content, args.listen, args.config,
                           args.boot)
    except ConfigError as e:
        print(f"thepusher master: the config has errors:\n{e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"thepusher master: {e}", file=sys.stderr)
        return 1
    host, port = srv.server_address[:2]
    cfg = srv.state.config
    log.info(
        "thepusher %s master on http://%s:%d/ (config %s: %s, %s)",
        __version__, host, port, cfg.path, count(len(cfg.images), "image"),
        count(len(cfg.groups), "group"),
    )
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
    return 0


def cmd_client(args) -> int:
    from thepusher.client.agent import Client
    from thepusher.signing import check_secret

    secret = args.secret if args.secret is not None else os.environ.get("THEPUSHER_SECRET", "")
    if secret:
        try:
            check_secret(secret)
        except ValueError as e:
            print(f"thepusher client: {e}", file=sys.stderr)
            return 2
    try:
        client = Client(args.master, args.bind, args.destination, args.data_port, secret)
    except OSError as e:
        print(f"thepusher client: cannot listen on {args.bind or '*'}:{args.data_port}: {e}",
              file=sys.stderr)
        return 1
    return client.run()


def cmd_status(args) -> int:
    from thepusher.client.master_link import MasterLink, MasterRefused, MasterUnreachable
    from thepusher.client.status_table import exit_code, render

    try:
        status = MasterLink(args.master, None).call("GET", "/api/status")
    except (MasterUnreachable, MasterRefused) as e:
        print(f"thepusher status: {e}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else render(status))
    return exit_code(status)


def cmd_group(args) -> int:
    """`start`, `retry`, `abort`, `wake`: ask the master to act on a group."""
    from urllib.parse import quote

    from thepusher.client.master_link import MasterLink, MasterRefused, MasterUnreachable

    path = f"/api/groups/{quote(args.group, safe='')}/{args.action}"
    try:
        answer = MasterLink(args.master, None, args.token).call("POST", path, {})
    except (MasterUnreachable, MasterRefused) as e:
        print(f"thepusher {args.action}: {e}", file=sys.stderr)
        return 1
    print(answer["message"])
    return 0


def cmd_reimage(args) -> int:
    """`reimage`: mark hosts for their next network boot (POST /api/next-boot)."""
    from thepusher.client.master_link import MasterLink, MasterRefused, MasterUnreachable

    boot = "clear" if args.clear else "put" if args.put else "image"
    body = {"targets": args.targets, "boot": boot, "device": args.put or ""}
    try:
        answer = MasterLink(args.master, None, args.token).call("POST", "/api/next-boot", body)
    except (MasterUnreachable, MasterRefused) as e:
        print(f"thepusher reimage: {e}", file=sys.stderr)
        return 1
    print(answer["message"])
    return 0


def cmd_check_config(args) -> int:
    from thepusher.config.describe import describe
    from thepusher.config.load import load
    from thepusher.config.model import ConfigError

    try:
        cfg = load(args.file, args.image_storage)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 1
    print(describe(cfg))
    missing = cfg.file_problems()
    for problem in missing:
        print(problem, file=sys.stderr)
    return 1 if missing else 0


def running_zipapp() -> Optional[str]:
    """The .pyz this process runs from, if any: what create-nbi puts in the image."""
    import thepusher

    return getattr(thepusher.__loader__, "archive", None)


def cmd_create_nbi(args) -> int:
    from thepusher.netboot import nbi

    pyz = args.pyz or running_zipapp()
    if pyz is None:
        print("thepusher create-nbi: run it from thepusher.pyz (make nbi does), or pass --pyz FILE",
              file=sys.stderr)
        return 1
    secret = args.secret if args.secret is not None else os.environ.get("THEPUSHER_SECRET", "")
    try:
        made = nbi.create(args.tinycore, args.out, pyz, args.master, args.download, args.append,
                          secret, args.ipxe)
    except (nbi.NbiError, OSError) as e:
        print(f"thepusher create-nbi: {e}", file=sys.stderr)
        return 1
    print(f"netboot image in {args.out}:")
    for name, what in made:
        print(f"  {name:<22} {what}")
    if not args.master:
        print("no master baked in: boot with thePusher=MASTER_IP (see pxelinux.cfg/default)")
    return 0


def cmd_put_image(args) -> int:
    """`put-image`, also what the netboot image runs for putImage=/dev/sdX."""
    from thepusher.client.upload import UploadError, put_image

    try:
        answer = put_image(args.master, args.input, args.name, args.compress, args.upload_token,
                           args.force, args.whole)
    except UploadError as e:
        print(f"thepusher put-image: {e}", file=sys.stderr)
        return 1
    print(answer.get("message", answer))
    return 0


def cmd_compress(args) -> int:
    """`compress`: exit 2 when refused (nothing done), 1 when it failed on the way."""
    from thepusher.image.compress import CompressError, Refused, compress_image

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a kill cleans up like Ctrl-C
    try:
        outcome = compress_image(args.image, args.format, args.level, args.threads, args.output,
                                 args.force, args.whole)
    except CompressError as e:
        print(f"thepusher compress: {e}", file=sys.stderr)
        return 2 if isinstance(e, Refused) else 1
    except KeyboardInterrupt:
        print("thepusher compress: interrupted, nothing written", file=sys.stderr)
        return 130
    print(outcome.summary())
    return 0


def cmd_demo(args) -> int:
    from thepusher.demo import run_demo

    return run_demo(args.clients, args.size, args.dir, args.keep, args.port)
