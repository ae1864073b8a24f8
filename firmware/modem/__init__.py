"""Sans-I/O modem dialogue (AT commands, per-model profiles, SMS PDU)."""
