"""The supervision station: archive (SQLite or PostgreSQL), ingest, web app, roster publishing."""
