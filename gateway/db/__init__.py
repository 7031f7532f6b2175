"""Database access shared by the ledger and the key store: models, engines, migrations."""
