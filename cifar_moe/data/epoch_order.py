"""Training order and augmentation draws that are a function of (seed, epoch, index) only.

Why: with persistent DataLoader workers, each worker's random stream starts once per run
and then runs on across epochs. That stream is in no checkpoint, so a run resumed from
``last.ckpt`` augmented differently from the uninterrupted run. Here the shuffle of an
epoch is drawn from ``(seed, epoch)`` and each sample's augmentation from
``(seed, epoch, index)``: the same whatever the number of workers, whether they persist,
and whether the run was resumed. ``seed`` itself is saved in the checkpoint.
"""

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler

_SEED_MASK = (1 << 63) - 1


def derived_seed(*parts: int) -> int:
    """A 63-bit seed from integers (tuple hashing of ints is the same in every process)."""
    return hash(tuple(parts)) & _SEED_MASK


class EpochShuffle(DistributedSampler):
    """A fresh permutation of ``range(n)`` every epoch, drawn from ``(seed, epoch)``.

    Under DDP every process draws the same permutation and takes every ``world``-th index
    from ``rank`` on: disjoint shards that together cover the set (padded, as torch's
    DistributedSampler does, so shards are equally long: up to ``world - 1`` repeats).
    Being a ``DistributedSampler``, Lightning uses it as it is instead of wrapping it.

    Lightning calls ``set_epoch`` before each epoch, but it builds the first epoch's
    iterator before that call (and worker processes draw ahead at once), so a resumed run
    must construct the sampler with its first ``epoch``. With ``keyed`` the sampler yields
    ``(index, sample_seed)`` pairs for :class:`SeededSamples`; without, plain indices.

    Args:
        n: size of the dataset to permute.
        seed: the run's seed; each epoch's permutation comes from ``(seed, epoch)``.
        keyed: yield ``(index, sample_seed)`` pairs instead of plain indices.
        epoch: the first epoch (a resumed run's), as ``set_epoch`` would set it.
        rank: this process's index under DDP.
        world: the number of DDP processes.
    """

    def __init__(self, n: int, seed: int, keyed: bool = True, epoch: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        super().__init__(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.n, self.keyed, self.epoch = n, keyed, epoch

    def __iter__(self) -> Iterator:
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=generator).tolist()
        order = (order * (1 + self.total_size // max(self.n, 1)))[: self.total_size]
        order = order[self.rank : self.total_size : self.num_replicas]
        if not self.keyed:
            return iter(order)
        return ((i, derived_seed(self.seed, self.epoch, i)) for i in order)


class SeededSamples(Dataset):
    """``dataset[index]`` with torch's random generator seeded from the sample's key.

    The caller's generator state is restored afterwards (it matters with ``num_workers=0``,
    where this runs in the training process).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class EpochOrder:
    """The data module's checkpointed order state: the seed and the epoch a run starts at."""

    def __init__(self) -> None:
        self._seed: int | None = None
        self.first_epoch = 0  # > 0 when resumed: see EpochShuffle

    @property
    def seed(self) -> int:
        """Seed of the training order and augmentation: the run's seed, kept in checkpoints.

        Under DDP every process must draw the same permutation: ``seed_everything`` gives
        each the same seed (a broadcast here would interleave with Lightning's own collectives).
        """
        if self._seed is None:
            self._seed = torch.initial_seed() & _SEED_MASK
        return self._seed

    def sampler(self, n: int, keyed: bool, trainer) -> EpochShuffle:
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return EpochShuffle(n, self.seed, keyed, self.first_epoch, rank, world)

    def state_dict(self, trainer) -> dict:
        # The epoch a resume starts with: the next one when this one's batches are all done.
        epoch, loop = 0, trainer.fit_loop if trainer else None
        if loop is not None:
            epoch = trainer.current_epoch + int(loop.epoch_loop.batch_progress.is_last_batch)
        return {"order_seed": self.seed, "first_epoch": epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        self._seed = state_dict.get("order_seed", self._seed)
        self.first_epoch = state_dict.get("first_epoch", 0)
