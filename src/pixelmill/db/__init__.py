"""Database access: engine creation, table definitions, migrations."""
