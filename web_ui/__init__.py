"""The box's local web page (aiohttp): reports, live board, agent panel, settings, REST API."""
