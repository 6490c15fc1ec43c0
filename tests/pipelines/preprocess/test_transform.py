"""``PreprocessImages`` alone, on ``beam.Create`` records: the split, the transformed rows and the analyzers."""

import collections

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.inputs.images import encode_png
from pipelines.preprocess.transform import PreprocessImages, is_eval
from tests.conftest import CLASSES, HEIGHT, PER_CLASS, WIDTH, known_pixels
from transforms import features
from transforms.image_spec import ImageSpec

EVAL_PERCENT = 30


def _records() -> list[dict]:
    return [
        {
            features.ID: f"{name}/{i:03d}.png",
            features.LABEL: name,
            features.IMAGE: encode_png(known_pixels(c, i)),
            "source": "memory",
        }
        for c, name in enumerate(CLASSES)
        for i in range(PER_CLASS)
    ]


def _rows(batch):
    """(id, label, first pixel as 0..255) of every row of a transformed RecordBatch."""
    ids = batch.column(features.ID).flatten().to_pylist()
    labels = batch.column(features.LABEL).flatten().to_pylist()
    pixels = batch.column(features.PIXELS).flatten().to_numpy().reshape(len(ids), -1)
    return [(i.decode(), lab.decode(), round(float(p[0]) * 255)) for i, lab, p in zip(ids, labels, pixels, strict=True)]


def test_records_are_split_transformed_and_analyzed_on_the_train_split_only(tmp_path):
    records = _records()
    expected = {"train": [], "eval": []}
    for r in records:
        first = int(known_pixels(CLASSES.index(r["label"]), int(r["id"][-7:-4]))[0, 0])
        expected["eval" if is_eval(r[features.ID], EVAL_PERCENT) else "train"].append((r["id"], r["label"], first))
    assert expected["train"] and expected["eval"]
    train_labels = collections.Counter(label for _, label, _ in expected["train"])
    eval_labels = collections.Counter(label for _, label, _ in expected["eval"])

    with TestPipeline() as p:
        created = p | beam.Create([records[i : i + 7] for i in range(0, len(records), 7)])  # lists, as reads batch them
        out = {"records": created, "analyze": created} | PreprocessImages(
            ImageSpec(HEIGHT, WIDTH, 1), "unit", EVAL_PERCENT, str(tmp_path)
        )
        for split in ("train", "eval"):
            rows = out[split] | f"{split}Rows" >> beam.FlatMap(_rows)
            assert_that(rows, equal_to(expected[split]), label=f"Check{split.title()}Rows")
        by_split = {"train": train_labels, "eval": eval_labels}
        counts = [((split, k), n) for split, c in by_split.items() for k, n in c.items()]
        assert_that(out["label_counts"], equal_to(counts), label="CheckLabelCounts")
        examples = out["analyzers"] | beam.Map(lambda a: (a["examples"], sorted(a["label_vocabulary"])))
        assert_that(examples, equal_to([(len(expected["train"]), sorted(train_labels))]), label="CheckAnalyzers")
