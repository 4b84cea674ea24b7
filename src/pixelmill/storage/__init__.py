"""Where output files live: a small interface (``base.Storage``) and its backends."""
