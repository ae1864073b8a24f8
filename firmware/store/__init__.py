"""Storage for an SD card that loses power.

- :mod:`firmware.store.config_store`: :class:`ConfigStore`, the configuration (TinyDB, one
  JSON file written atomically), credentials (digest HA1, scrypt), API tokens, box secret.
- :mod:`firmware.store.calls`: :class:`CallStore`, call records, events, agent states,
  missed calls, registrations and bans (SQLite WAL, group commits by a writer thread or process).
- :mod:`firmware.store.recordings`: :class:`Recordings`, recording paths and retention.
- :mod:`firmware.store.reports`: :class:`Reports`, the manager's reports over the call store.
"""
