"""One module per wire protocol; `common` holds what they share."""
