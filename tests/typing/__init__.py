"""Files the type-checking tests run mypy on (not collected by pytest: no ``test_`` prefix)."""
