"""Hearing recordings: the archive of recorded files (per participant and the composite), their
hashes, retention and legal hold. The recorder itself (an aiortc peer on the wire) lives in
``signaling.recorder``; this package only knows files and rows."""
