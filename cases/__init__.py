"""Domain core: organisations, staff, parties, cases, dispatch, lifecycle and the audit trail.

Holds the one SQLAlchemy ``Base`` every domain package's models use. Imports only ``config``
and third-party libraries — never ``server``, aiohttp or socketio."""
