"""Call logic: B2BUA calls, routing, IVR, queues, agents. Joins SIP, modem and media events."""
