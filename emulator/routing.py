"""How the data plane chooses: which deployment serves a request, which are mirrored.

Live traffic uses smooth weighted round robin (the scheme nginx uses): over every
window of 100 requests each deployment gets exactly its percentage, and the picks
are spread evenly, so a 90/10 split sends every tenth request to the 10% side
instead of in bursts. Exact in the long run, fair in the short run, and O(number of
deployments) per request with no random draws. Mirroring uses the same idea for a
single share: an accumulator adds the percentage per request and mirrors each time
it passes 100.
"""

from __future__ import annotations

from collections.abc import Mapping


class SmoothWeighted:
    def __init__(self, weights: Mapping[str, int]) -> None:
        self.weights = {name: w for name, w in weights.items() if w > 0}
        self.total = sum(self.weights.values())
        self._current = dict.fromkeys(self.weights, 0)

    def next(self) -> str | None:
        """The deployment for the next request; None when no deployment has positive weight."""
        if not self.total:
            return None
        best: str | None = None
        best_value = 0
        for name, weight in self.weights.items():
            value = self._current[name] + weight
            self._current[name] = value
            if best is None or value > best_value:
                best, best_value = name, value
        assert best is not None
        self._current[best] -= self.total
        return best


class MirrorGate:
    def __init__(self, target: str | None, percent: int) -> None:
        self.target = target if percent > 0 else None
        self.percent = percent if target else 0
        self._acc = 0

    def next(self) -> str | None:
        """The deployment to mirror this request to, or None."""
        if self.target is None:
            return None
        self._acc += self.percent
        if self._acc >= 100:
            self._acc -= 100
            return self.target
        return None
