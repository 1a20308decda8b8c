"""Repository operations: ``Repo`` + arguments -> result dataclass. No printing."""
