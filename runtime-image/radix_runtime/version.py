"""The runtime's version, reported by /version, /server_info and the X-... headers."""

__version__ = "0.1.0"
