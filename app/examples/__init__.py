"""Example functions; `python -m app dev` serves `hello` when `STEPLINE_FUNCTIONS` is unset."""
