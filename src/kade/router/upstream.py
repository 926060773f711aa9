"""One keep-alive connection to an upstream server: parses responses and forwards them.

Bytes meant for the client are gathered while one chunk of upstream data is parsed and written
with one call afterwards (head and body of a small response leave in one send). Completion is
handled after parsing too, so that a connection never changes hands inside a parser callback.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from kade.router.http import fast_head, remember_head, response_head, rewrite_response_head

if TYPE_CHECKING:
    from kade.router.balancer import Server
    from kade.router.exchange import ClientSide, Exchange

MAX_RESPONSE_HEAD = 64 * 1024
_CHUNKED = b"\r\ntransfer-encoding: chunked"
_CLOSE = b"\r\nconnection: close"
_KEEP_ALIVE = b"\r\nconnection: keep-alive"
_END = b"\r\n\r\n"


class _BadResponse(Exception):
    pass


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "x", "headbuf", "in_head", "interim", "done",
                 "reset", "keep", "uses", "idle_since", "closed", "tunnel", "got_bytes", "out",
                 "close_delimited", "chunk_out", "read_paused")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: Any = None
        self.parser = HttpResponseParser(self)
        self.x: Exchange | None = None
        self.headbuf = b""
        self.in_head = True
        self.interim = False
        self.done = False
        self.reset = False
        self.keep = False
        self.uses = 0
        self.idle_since = 0.0
        self.closed = False
        self.tunnel: ClientSide | None = None
        self.got_bytes = False
        self.out: list[bytes] = []
        self.close_delimited = False
        self.chunk_out = False
        self.read_paused = False

    # -- the pool's view -----------------------------------------------------------------------

    def is_usable(self) -> bool:
        return not self.closed and not self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.transport.write(data)
            return
        x = self.x
        if x is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self.got_bytes = True
        if self.in_head and not self.headbuf and not self.interim:
            # fast path: a whole sized response in one read, with a head seen before
            end = data.find(b"\r\n\r\n")
            if end > 0:
                fast = fast_head(data[:end])
                if (fast is not None and len(data) - end - 4 == fast[2] and x.keep_alive
                        and not x.is_head and not x.http10 and not x.upgrade
                        and not x.conn.closing):
                    x.status = fast[1]
                    x.resp_started = True
                    x.bytes_out += fast[2]
                    x.conn.transport.write(fast[0] + data[end + 4:] if fast[2] else fast[0])
                    self.x = None
                    self.got_bytes = False
                    x.conn.upstream_done(x, self, fast[3])
                    return
        if self.in_head:
            buf = self.headbuf + data if self.headbuf else data
            if len(buf) > MAX_RESPONSE_HEAD and b"\r\n\r\n" not in buf:
                x.conn.upstream_failed(x, self)
                return
            self.headbuf = buf
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as e:
            if x.status != 101:
                x.conn.upstream_failed(x, self)
                return
            rest = data[e.args[0]:]
            if rest:
                self.out.append(rest)
            self._flush(x)
            x.conn.start_tunnel(x, self)
            return
        except HttpParserError:
            if not self.done:
                self.out.clear()
                x.conn.upstream_failed(x, self)
                return
            self.keep = False  # bytes after the end of the response
        out = self.out
        if out:
            if len(out) < 4:
                x.conn.transport.write(out[0] if len(out) == 1 else b"".join(out))
                out.clear()
            else:
                self._flush(x)
        if self.done:
            if self.reset:
                self.reset = False
                self.parser = HttpResponseParser(self)
            # ready for the next request on this connection
            self.x = None
            self.in_head = True
            self.done = False
            self.got_bytes = False
            self.close_delimited = False
            self.chunk_out = False
            x.conn.upstream_done(x, self, self.keep)

    def _flush(self, x: Exchange) -> None:
        out = self.out
        t = x.conn.transport
        if len(out) == 1:
            t.write(out[0])
        elif len(out) < 4:
            t.write(b"".join(out))
        else:
            t.writelines(out)
        out.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.tunnel is not None:
            self.tunnel.tunnel_closed()
            self.tunnel = None
            return
        x = self.x
        if x is None:
            idle = self.server.idle
            if self in idle:
                idle.remove(self)
            return
        self.x = None
        if self.close_delimited and not self.in_head:
            if self.chunk_out:
                self.out.append(b"0\r\n\r\n")
            if self.out:
                self._flush(x)
            x.conn.upstream_done(x, self, False)
        else:
            x.conn.upstream_lost(x, self)

    def pause_writing(self) -> None:
        conn = self.tunnel or (self.x.conn if self.x is not None else None)
        if conn is not None:
            conn.pause(1)

    def resume_writing(self) -> None:
        conn = self.tunnel or (self.x.conn if self.x is not None else None)
        if conn is not None:
            conn.resume(1)

    # -- parser callbacks ----------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        x = self.x
        if x is None or self.done:
            raise _BadResponse
        buf = self.headbuf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            raise _BadResponse
        head = buf[:end]
        status = self.parser.get_status_code()
        if status < 200 and status != 101:
            # 100 Continue, 103 Early Hints: passed on, the real answer follows
            self.headbuf = buf[end + 4:]
            self.interim = True
            if not x.http10:
                self.out.append(rewrite_response_head(head)[0] + _END)
            return
        self.in_head = False
        self.headbuf = b""
        if status == 101 and not x.upgrade:
            raise _BadResponse
        x.status = status
        x.resp_started = True
        self.keep = self.parser.should_keep_alive()
        if status == 101:
            self.out.append(rewrite_response_head(head, True)[0] + _END)
            return
        original = head
        head, has_length, has_te = response_head(head)
        extra = b""
        no_body = x.is_head or status == 204 or status == 304
        if has_length and not has_te and not no_body:
            remember_head(original, head, status, self.keep)
        if no_body:
            if has_te and not x.http10:
                extra = _CHUNKED
        elif has_te or not has_length:
            self.close_delimited = not has_te
            if x.http10:
                x.keep_alive = False
            else:
                self.chunk_out = True
                extra = _CHUNKED
        if not x.keep_alive or x.conn.closing:
            x.keep_alive = False
            extra += _CLOSE
        elif x.http10:
            extra += _KEEP_ALIVE
        self.out.append(head + extra + _END if extra else head + _END)
        if x.is_head:
            # the parser would wait for a body a HEAD answer never has
            self.done = True
            self.reset = True

    def on_body(self, body: bytes) -> None:
        x = self.x
        if x is None or self.done:
            raise _BadResponse
        x.bytes_out += len(body)
        if self.chunk_out:
            self.out.append(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            self.out.append(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.done:
            return
        self.done = True
        self.keep = self.keep and self.parser.should_keep_alive()
        if self.chunk_out:
            self.out.append(b"0\r\n\r\n")
