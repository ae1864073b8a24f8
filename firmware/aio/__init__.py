"""All I/O: SIP transports, serial transports and the service that wires everything."""
