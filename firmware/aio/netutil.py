"""Which of the box's addresses a peer reaches it on (for SDP and Contact when bound to 0.0.0.0)."""
from __future__ import annotations

import socket
from functools import lru_cache


@lru_cache(maxsize=1024)
def local_address_for(peer_ip: str) -> str | None:
    """The local address the kernel would send from to reach `peer_ip` (no packet is sent:
    connecting a UDP socket only consults the routing table). None when there is no route."""
    family = socket.AF_INET6 if ":" in peer_ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((peer_ip, 9))
            return s.getsockname()[0]
    except OSError:
        return None
