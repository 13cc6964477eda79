"""A paho client that reads the broker's stream in large chunks.

paho reads each packet with several tiny ``recv`` calls (one byte for the command, one per
byte of the remaining length, then the body). At tens of thousands of messages a second
those system calls dominate the bridge. ``BufferedClient`` wraps the TCP socket in a reader
that fetches up to 256 KiB at a time and answers the small reads from memory; it exposes
``pending()``, the hook paho already uses for TLS sockets, so paho's loop keeps reading
while buffered bytes remain; ``loop_read`` handles a burst of buffered packets per
loop iteration instead of one packet per ``select``.
"""

from __future__ import annotations

import socket
from typing import Any

import paho.mqtt.client as mqtt

_CHUNK = 256 * 1024
# Packets handled per loop iteration while buffered bytes remain; bounded so that
# outgoing PUBACKs and keepalives are still written promptly.
_READ_BURST = 128


class _BufferedSocket:
    """A non-blocking socket whose reads are served from a chunk buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes, from the buffer, refilled with one large read when empty."""
        if self._pos >= len(self._buf):
            data = self._sock.recv(max(bufsize, _CHUNK))  # BlockingIOError when nothing waits
            if len(data) <= bufsize:
                return data
            self._buf, self._pos = data, 0
        end = self._pos + bufsize
        out = self._buf[self._pos : end]
        self._pos = min(end, len(self._buf))
        return out

    def pending(self) -> int:
        """Bytes already read from the socket and not yet handed to paho."""
        return len(self._buf) - self._pos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """``paho.mqtt.client.Client`` over a buffered TCP socket (plain TCP only)."""

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not self._ssl and self._transport == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _BufferedSocket(sock)
        return sock

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Read one packet, then more while they are already buffered (up to a burst)."""
        rc = super().loop_read(max_packets)
        for _ in range(_READ_BURST):
            sock = self._sock
            if rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, _BufferedSocket):
                break
            if sock.pending() == 0:
                break
            rc = super().loop_read(max_packets)
        return rc
