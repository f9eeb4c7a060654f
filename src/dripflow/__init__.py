"""dripflow: a self-hosted marketing-automation and email-sequence engine."""

__version__ = "0.1.0"
