"""Support judges for citation verification; ``build_judge(config)`` picks one by name."""

from openscholar.judges.protocol import SupportJudge
from openscholar.judges.registry import JUDGES, build_judge

__all__ = ["JUDGES", "SupportJudge", "build_judge"]
