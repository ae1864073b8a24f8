"""Firmware of the office phone box: a small-office IP-PBX and call centre."""

__version__ = "0.1.0"
