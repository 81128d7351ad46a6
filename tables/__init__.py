"""State definitions: Faust tables backed by changelog topics."""
