"""Storage for an SD card that loses power: config (TinyDB), call records (SQLite WAL), recordings."""
