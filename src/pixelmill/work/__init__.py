"""Running tasks: the worker pool that claims them from the queue (``worker``) and the executor
that turns one into stored images through an engine (``execute``)."""
