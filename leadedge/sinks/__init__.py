"""Plain sink classes: explicit arguments, `start()`, `write(batch)`, `stop()`."""
