from svctest import packs

__all__ = ["packs"]
