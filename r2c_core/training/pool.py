"""The 50-image history pool of generated fakes (the reference's ``ItemPool``, spec 1.11).

Per sample: while the pool holds fewer than ``size`` items, store the new one and return it; otherwise with
probability 0.5 return a random stored item and put the new one in its place, else return the new one.
Randomness comes from an explicit ``torch.Generator`` so a run is reproducible and resumable.
"""

from __future__ import annotations

import torch


class ImagePool:
    def __init__(self, size: int = 50) -> None:
        self.size = int(size)
        self.items: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.items)

    def query(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Return a batch of the same shape: new fakes or older ones swapped out of the pool (detached)."""
        if self.size == 0:
            return batch.detach()
        out = []
        for item in batch.detach():
            if len(self.items) < self.size:
                self.items.append(item.clone())
                out.append(item)
            elif float(torch.rand((), generator=gen)) > 0.5:
                idx = int(torch.randint(0, len(self.items), (), generator=gen))
                out.append(self.items[idx])
                self.items[idx] = item.clone()
            else:
                out.append(item)
        return torch.stack(out)

    def state(self) -> torch.Tensor:
        """All stored items as one tensor (0 items -> an empty tensor)."""
        return torch.stack(self.items) if self.items else torch.empty(0)

    def load_state(self, t: torch.Tensor, device: torch.device | str | None = None) -> None:
        self.items = [x.to(device) if device is not None else x for x in t] if t.numel() else []
