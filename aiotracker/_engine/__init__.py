"""The engine boundary (``base``), its Docker implementation and an in-memory fake."""
