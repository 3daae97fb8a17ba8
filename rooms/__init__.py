"""Hearing rooms: lobby, admission, roles, caucus sub-rooms and who may hear whom.

Pure logic and models; no aiohttp or socketio imports (the transport delivers, rooms decides)."""
