"""Drivers for the independent SIP peers the tests use (SIPp, pyVoIP, baresip, pjsua2).

Every driver runs on loopback with ports chosen by the test, bounds every wait, and cleans
up its processes.
"""
