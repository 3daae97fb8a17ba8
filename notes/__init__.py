"""Hearing records (调解笔录) and case notes, edited live with a CRDT (pycrdt ↔ Yjs)."""
