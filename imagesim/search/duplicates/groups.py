"""A group of copies or similar shots: which member to keep (the alignment says how each copy was made,
`explain.py`) and each other member explained against it; byte-identical files join as copies."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...encoders.keypoints import Features, align
from .. import explain
from .verify import Verifier


@dataclass(frozen=True)
class Member:
    """One photo of a group: how it differs from the one to keep (`keep` marks that one)."""

    path: str
    keep: bool
    score: float  # 0..1: how closely it matches the kept photo (1 for the kept photo itself)
    explanation: str

    def to_json(self) -> dict:
        return {"path": self.path, "keep": self.keep, "score": round(self.score, 3), "explanation": self.explanation}


@dataclass(frozen=True)
class DupGroup:
    """Copies of one photo, or similar shots of one scene; `members[0]` is the suggested keeper."""

    kind: str
    score: float  # the weakest member's score: every member matches the kept photo at least this well
    members: list[Member] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [m.path for m in self.members]

    @property
    def extras(self) -> list[str]:
        """The members that are not the suggested keeper."""
        return [m.path for m in self.members if not m.keep]

    def to_json(self) -> dict:
        return {"kind": self.kind, "score": round(self.score, 3), "members": [m.to_json() for m in self.members]}


def describe_group(kind: str, ids: list[int], paths: dict[int, str], verifier: Verifier) -> DupGroup:
    """A group with its keeper chosen (most of the scene, most pixels, least compressed, oldest) and each other
    member explained against it."""
    facts = [explain.file_facts(paths[i]) for i in ids]
    feats = [verifier.features(i) for i in ids]
    # how wide a view each member shows, against the member with the most pixels (one alignment each way)
    ref = max(range(len(ids)), key=lambda i: facts[i].width * facts[i].height)
    shares = [_view(feats[ref], f) if kind == "copies" else 1.0 for f in feats]
    order = explain.keep_order(facts, shares, feats)
    keeper = order[0]
    members = [Member(paths[ids[keeper]], True, 1.0, "suggested keep: " + _why_keep(facts[keeper], shares[keeper]))]
    for i in order[1:]:
        fa, fb = feats[keeper], feats[i]
        al = align(fa, fb) if fa is not None and fb is not None else None
        if al is None or fa is None or fb is None:
            members.append(Member(paths[ids[i]], False, 0.0, "joined through another member"))
            continue
        words = explain.describe(al, fa, fb, facts[keeper], facts[i])
        if kind == "similar":
            words = ["another shot of the same scene"] + [w for w in words if w.startswith(("cropped", "rotated"))]
        members.append(Member(paths[ids[i]], False, max(0.0, min(1.0, al.agreement)), ", ".join(words)))
    score = min((m.score for m in members[1:] if m.score > 0), default=0.0)
    return DupGroup(kind, score, members)


def _view(ref: Features | None, f: Features | None) -> float:
    """f's view relative to ref's: above 1 when ref is a crop of f, below when f is a crop of ref."""
    if ref is None or f is None or ref is f:
        return 1.0
    there, back = align(ref, f), align(f, ref)
    if there is None or back is None:
        return 1.0
    return explain.crop_share(there, ref, f) / max(explain.crop_share(back, f, ref), 0.05)


def _why_keep(f: explain.FileFacts, share: float) -> str:
    bits = [f"{f.width}x{f.height}"] if f.width else []
    if f.quality < 100 and f.quality:
        bits.append(f"JPEG quality ~{f.quality}")
    if share >= 0.99:
        bits.append("the widest view")
    return ", ".join(bits) or "first of the group"


def identical_group(files: list[str]) -> DupGroup:
    """A group of byte-identical files (one content), the oldest suggested as the keeper."""
    files = sorted(files)
    keep = min(files, key=lambda p: explain.file_facts(p).mtime)
    members = [Member(keep, True, 1.0, "suggested keep: oldest of identical files")]
    members += [Member(p, False, 1.0, "identical file") for p in files if p != keep]
    return DupGroup("copies", 1.0, members)


def with_identical(group: DupGroup, paths: dict[int, list[str]], cids: set[int]) -> DupGroup:
    """The group with the other files of its contents (`cids`) added as identical copies."""
    listed = set(group.paths)
    extra = [Member(p, False, 1.0, "identical file") for c in sorted(cids) for p in paths.get(c, []) if p not in listed]
    return DupGroup(group.kind, group.score, group.members + extra) if extra else group
