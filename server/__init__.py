"""Composition: the aiohttp app factory, middlewares, the JSON API, engine lifecycle,
migrations and the ``yuntiao`` command line."""
