"""CNI spec versions: parsing, ordering and the set this runtime speaks."""

from .errors import ConfigError

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


def parse(version):
    """'1.0.0' -> (1, 0, 0). Raises ConfigError for anything else."""
    if not isinstance(version, str):
        raise ConfigError(f"cniVersion must be a string, got {version!r}")
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"invalid cniVersion {version!r}: want MAJOR.MINOR.PATCH")
    return tuple(int(p) for p in parts)


def at_least(version, minimum):
    return parse(version) >= parse(minimum)


def newest_first(versions):
    return sorted(set(versions), key=parse, reverse=True)
