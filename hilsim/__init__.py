"""hilsim: an OCPP 1.6J charge point for hardware-in-the-loop testing."""

__version__ = "0.1.0"
