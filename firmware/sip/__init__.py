"""Sans-I/O SIP stack (RFC 3261 and friends): no asyncio, sockets or clocks here."""
