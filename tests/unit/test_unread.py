"""How full a socket's receive buffer is with bytes not read yet: what a hop reports so
that the master can tell a hop that reads slowly from a slow link to it."""

import socket
import time

from thepusher import syscalls


def test_unread_share_grows_with_what_waits_in_the_socket_and_is_none_once_closed():
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
        with sender, receiver:
            assert syscalls.unread_share(receiver) == 0.0
            sender.sendall(b"x" * 65536)
            size = receiver.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            want = min(1.0, 65536 / size)
            deadline = time.monotonic() + 5
            while syscalls.unread_share(receiver) != want and time.monotonic() < deadline:
                time.sleep(0.01)
            assert syscalls.unread_share(receiver) == want
            receiver.settimeout(5)
            got = 0
            while got < 65536:
                got += len(receiver.recv(65536))
            assert syscalls.unread_share(receiver) == 0.0
        assert syscalls.unread_share(receiver) is None
