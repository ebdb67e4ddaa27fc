"""datastore/index package."""
