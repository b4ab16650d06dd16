"""Small shared helpers: logging set-up and progress reporting."""
