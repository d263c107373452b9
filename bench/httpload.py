"""A minimal HTTP/1.1 keep-alive client on asyncio protocols, for load generation on loopback.

httpx spends ~2.4 ms of CPU per request, which capped one generator core near 420 req/s and
added its own queueing to every latency measured. This client sends prebuilt request bytes over
persistent TCP_NODELAY connections and parses only the status line, Content-Length and the body
(~0.1 ms per request), so the server under test, not the generator, sets the figures. It speaks
exactly what the benchmark needs: GET/POST, Content-Length bodies, no chunked encoding (uvicorn
sends Content-Length for every response of these apps), no TLS, no redirects.
"""

from __future__ import annotations

import asyncio
import socket


class HTTPError(RuntimeError):
    pass


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HTTPError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                self.waiter.set_exception(HTTPError("chunked responses are not supported"))
                return
        if len(self.buf) < end + 4 + length:
            return
        status = int(head[9:12])
        body = bytes(self.buf[end + 4:end + 4 + length])
        del self.buf[:end + 4 + length]
        self.waiter.set_result((status, body))

    def send(self, request: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter


class Client:
    """Keep-alive connections to one host:port, opened on demand (an open-loop generator needs
    as many as there are requests in flight) and reused."""

    def __init__(self, host: str, port: int, timeout_s: float = 2.0):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._idle: list[_Conn] = []
        self._all: list[_Conn] = []

    @classmethod
    def for_url(cls, url: str, timeout_s: float = 2.0) -> Client:
        hostport = url.split("://", 1)[-1].rstrip("/")
        host, _, port = hostport.partition(":")
        return cls(host, int(port or 80), timeout_s)

    def request_bytes(self, method: str, path: str, body: bytes | None = None,
                      content_type: str = "application/json") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        return head.encode() + b"\r\n" + (body or b"")

    async def _conn(self) -> _Conn:
        while self._idle:
            c = self._idle.pop()
            if not c.closed:
                return c
        loop = asyncio.get_running_loop()
        _, c = await loop.create_connection(_Conn, self.host, self.port)
        self._all.append(c)
        return c

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """One prebuilt request → (status, body); raises on transport errors or the timeout."""
        c = await self._conn()
        try:
            out = await asyncio.wait_for(c.send(request), self.timeout_s)
        except BaseException:
            c.transport.close()  # its answer may still come: never reuse it
            raise
        self._idle.append(c)
        return out

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.send(self.request_bytes("GET", path))

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return await self.send(self.request_bytes("POST", path, body))

    def close(self) -> None:
        for c in self._all:
            if c.transport is not None:
                c.transport.close()
