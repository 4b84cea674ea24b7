"""The submit pipeline every contract calls: validate, render templates, moderate, price,
idempotency and cache, then insert (``service``); the operations on finished tasks
(``operations``), batches (``batches``) and template evaluations (``evaluations``)."""
