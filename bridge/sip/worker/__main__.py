"""``python -m bridge.sip.worker --spec JSON --fd N``: one SIP worker process."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

import pjsua2 as pj

from bridge.log import install_repeat_filter
from bridge.sip import wire
from bridge.sip.spec import WorkerSpec

from .endpoint import Worker
from .outbox import Outbox

logger = logging.getLogger("bridge.sip.worker")

SOCKET_BUFFER_BYTES = 1 << 20
# Exit statuses of a worker that could not start (bridge.sip.supervisor words them for people):
# pjlib reports an OS error e as PJ_ERRNO_START_SYS (120000) + e.
START_FAILED = 2
START_FAILURES = {120000 + 98: 3, 120000 + 99: 4}  # EADDRINUSE: port taken; EADDRNOTAVAIL


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.sip.worker")
    parser.add_argument("--spec", required=True, help="WorkerSpec as JSON")
    parser.add_argument("--fd", type=int, required=True, help="SOCK_SEQPACKET socket to report on")
    parser.add_argument("--pj-log-level", type=int, default=2, help="pjsua log level 0..6")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    spec = WorkerSpec.from_json(args.spec)
    logging.basicConfig(
        level=args.log_level,
        format=f"%(asctime)s %(levelname)s sip-worker[{spec.index}]: %(message)s",
    )
    install_repeat_filter()  # a flood of one failure is one line a minute
    sock = socket.socket(fileno=args.fd)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    sock.setblocking(False)
    stop = [False]

    def on_signal(signum: int, frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    outbox = Outbox(sock)
    worker = Worker(spec, outbox, pj_log_level=args.pj_log_level)
    try:
        worker.start()
    except pj.Error as exc:
        # The main process words the failure (its exit status says which); details at DEBUG.
        logger.debug("cannot start on %s:%d: %s", spec.host, spec.sip_port, exc.info())
        return START_FAILURES.get(int(exc.status), START_FAILED)
    worker.log_writer.started = True
    outbox.send_control(wire.Ready(worker=spec.index, sip_port=spec.sip_port, pid=os.getpid()))
    logger.info(
        "listening on %s:%d (%s), RTP %d..%d, codecs %s",
        spec.host,
        spec.sip_port,
        "+".join(spec.transports),
        spec.rtp_port,
        spec.rtp_port + spec.rtp_port_range - 1,
        ",".join(spec.codecs),
    )
    try:
        worker.run(sock, stop)
    finally:
        worker.shutdown()
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
