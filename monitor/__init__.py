"""tgmonitor: watch Telegram channels and alert when watched entities are mentioned."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tgmonitor")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
