"""Evidence: uploads, storage, integrity ledger and examination (质证)."""
