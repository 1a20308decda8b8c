"""dataver: content-addressed data and model versioning beside git."""

__version__ = "0.1.0"
__all__ = ["__version__"]
