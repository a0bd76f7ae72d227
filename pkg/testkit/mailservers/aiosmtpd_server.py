"""aiosmtpd for the interoperability tests of pkg/testkit/mailservers (aiosmtpd.go).

Run by Debian's /usr/bin/python3 (python3-aiosmtpd) as

    /usr/bin/python3 -I -c <this file> <config.json>

The config (written by aiosmtpd.go) holds the certificate, the account, the
limits, the inbox directory and one port per mode. Every mode listens on
127.0.0.1 in this one process; one handler stores what all of them receive:
each transaction as <id>.eml (the raw bytes, CRLF kept, dot-unstuffed) and
<id>.json (mail_from, rcpt_tos), each written to a temporary name and renamed,
the .json last, so a reader that lists *.json never sees half a message.

Prints "ready aiosmtpd <version>" on stdout once every listener is up; logs
the SMTP sessions (logger "mail.log") on stderr; exits on SIGTERM, SIGINT or
when stdin reaches EOF (the Go test process went away).
"""

import asyncio
import itertools
import json
import logging
import os
import signal
import ssl
import sys
import time

import aiosmtpd
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOSTNAME = "mx.aiosmtpd.test"


class Handler:
    def __init__(self, inbox, refuse_local_part, username, password):
        self.inbox = inbox
        self.refuse = refuse_local_part.casefold()
        self.username = username.encode("utf-8")
        self.password = password.encode("utf-8")
        self.seq = itertools.count(1)
        self.prefix = "%x" % int(time.time())

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.rpartition("@")[0] if "@" in address else address
        if local.casefold() == self.refuse:
            return "550 5.1.1 <%s>: Recipient address rejected" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg_id = "%s-%08d" % (self.prefix, next(self.seq))
        self._write(msg_id + ".eml", envelope.original_content)
        meta = {
            "id": msg_id,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_options": list(envelope.mail_options),
            "peer": list(session.peer) if session.peer else None,
            "tls": session.ssl is not None or getattr(server, "_implicit_tls", False),
            "authenticated": bool(session.authenticated),
        }
        self._write(msg_id + ".json", json.dumps(meta).encode("utf-8"))
        logging.getLogger("mail.log").info(
            "%r stored %s from %s to %s (%d bytes)",
            session.peer, msg_id, envelope.mail_from, envelope.rcpt_tos,
            len(envelope.original_content))
        return "250 2.0.0 Ok: queued as %s" % msg_id

    def _write(self, name, data):
        tmp = os.path.join(self.inbox, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.inbox, name))

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == self.username
              and auth_data.password == self.password)
        logging.getLogger("mail.log").info(
            "%r AUTH %s %s", session.peer, mechanism, "accepted" if ok else "refused")
        # handled=False: smtp_AUTH answers "535 5.7.8 Authentication
        # credentials invalid" on failure.
        return AuthResult(success=ok, handled=False)


async def serve(cfg):
    loop = asyncio.get_running_loop()
    handler = Handler(cfg["inbox"], cfg["refuse_local_part"],
                      cfg["username"], cfg["password"])

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cfg["cert_file"], cfg["key_file"])

    common = dict(
        hostname=HOSTNAME,
        enable_SMTPUTF8=True,
        decode_data=False,
        data_size_limit=int(cfg["max_size"]),
        timeout=float(cfg["idle_timeout"]),
        authenticator=handler.authenticate,
        auth_required=False,
        auth_require_tls=False,
        loop=loop,
    )
    # mode -> (SMTP keyword arguments, ssl context of the listening socket)
    modes = {
        "plain": (dict(tls_context=tls, require_starttls=False), None),
        "starttls-required": (dict(tls_context=tls, require_starttls=True), None),
        # TLS from the first byte: no STARTTLS inside it.
        "implicit": (dict(tls_context=None), tls),
        "login-only": (dict(tls_context=tls, require_starttls=False,
                            auth_exclude_mechanism=["PLAIN"]), None),
    }

    servers = []
    for mode, port in cfg["ports"].items():
        kwargs, sock_ssl = modes[mode]
        kwargs = {**common, **kwargs}

        def factory(kwargs=kwargs, implicit=sock_ssl is not None):
            smtp = SMTP(handler, **kwargs)
            smtp._implicit_tls = implicit
            return smtp

        srv = await loop.create_server(
            factory, host="127.0.0.1", port=int(port), ssl=sock_ssl,
            reuse_address=True)
        servers.append(srv)
        logging.getLogger("mail.log").info(
            "listening: mode %s on 127.0.0.1:%s", mode, port)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def stdin_readable():
        try:
            data = os.read(0, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(0)
            stop.set()

    try:
        loop.add_reader(0, stdin_readable)
    except (OSError, ValueError, PermissionError):
        pass  # stdin is not pollable (a regular file): rely on signals.

    print("ready aiosmtpd %s" % aiosmtpd.__version__, flush=True)
    await stop.wait()
    logging.getLogger("mail.log").info("stopping")
    for srv in servers:
        srv.close()
    for srv in servers:
        await srv.wait_closed()


def main():
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    asyncio.run(serve(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
