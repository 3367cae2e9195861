"""What ``fuse_models`` did: the members, the combination, what was merged and what was fused."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from graphopt.ir import GraphStats
from graphopt.report import human_bytes


@dataclass(frozen=True)
class MemberInfo:
    """One member as captured: its name, capture method, compute nodes and parameter bytes."""

    name: str
    capture_method: str
    nodes: int
    param_bytes: int


@dataclass
class FusionReport:
    """Members, combination, nodes and weight bytes merged across members, layers fused horizontally.

    ``merged`` names the nodes removed because an earlier node computed the same op on the same
    inputs with weights of the same content; ``horizontal`` lists each group of corresponding
    member layers that became one layer (e.g. ``conv1 x4 -> conv2d 1->64``).
    """

    combine: str
    members: list[MemberInfo]
    unfused: GraphStats
    fused: GraphStats
    merged: list[str] = field(default_factory=list)
    merged_bytes: int = 0
    horizontal: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "combine": self.combine,
            "members": [asdict(m) for m in self.members],
            "unfused": self.unfused.to_dict(),
            "fused": self.fused.to_dict(),
            "merged": list(self.merged),
            "merged_bytes": self.merged_bytes,
            "horizontal": list(self.horizontal),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> Any:
        """A rich Table: one row per member, then the fused graph, merges and horizontal fusion."""
        from rich.table import Table

        table = Table(title=f"graphopt: ensemble of {len(self.members)} (combine={self.combine})")
        for column in ("member", "captured with", "nodes", "param bytes"):
            table.add_column(column, justify="left" if column in ("member", "captured with") else "right")
        for index, member in enumerate(self.members):
            table.add_row(
                f"m{index}: {member.name}", member.capture_method, str(member.nodes), human_bytes(member.param_bytes)
            )
        table.add_row("(members together)", "", str(self.unfused.nodes), human_bytes(self.unfused.param_bytes))
        table.add_row("(fused graph)", "", str(self.fused.nodes), human_bytes(self.fused.param_bytes))
        table.caption = self.summary()
        return table

    def summary(self) -> str:
        parts = [f"merged {len(self.merged)} node(s) and {human_bytes(self.merged_bytes)} of weights across members"]
        parts.append(f"fused {len(self.horizontal)} layer group(s) horizontally")
        return "; ".join(parts)
