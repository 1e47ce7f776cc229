"""Pavedroad: an internal developer platform in one box."""

__version__ = "0.1.0"
