"""Safety in the request layer (prompt moderation); output screening and review come later."""
