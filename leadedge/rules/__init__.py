"""The merge rules and everything else that is pure: no Faust, no I/O, testable alone."""
