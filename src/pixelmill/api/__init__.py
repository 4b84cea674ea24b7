"""HTTP only: routers per contract, the error envelope, auth. No business logic here."""
