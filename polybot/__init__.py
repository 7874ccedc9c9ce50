"""polybot: a supervised Trio trading bot for Polymarket US sports markets."""

__version__ = "0.1.0"
