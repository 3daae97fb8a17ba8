"""Mediation agreements: documents, signing and verification."""
