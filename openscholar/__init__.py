"""openscholar package."""
