"""The task: its record, its lifecycle, the operations it can name, and what it costs."""
