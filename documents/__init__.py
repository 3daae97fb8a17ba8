"""Typesetting of the platform's PDF documents (agreements, hearing records) over reportlab.

``documents.pdf`` embeds a CJK TrueType font (subset), breaks Chinese lines correctly and frames
every page with "x / y", the document ID and an optional verification QR code. This package
imports only ``config``, the standard library and reportlab.
"""
