"""Feature keys shared by every stage.

Raw features (what preprocessing reads and the exported model's callers supply):
  ``id`` (string, stable record id), ``label`` (string, ``""`` when unknown) and ``image``
  (encoded image bytes: PNG, JPEG, BMP or GIF).
Transformed features (what training reads from the TFRecords):
  ``id``, ``label``, ``label_index`` (int64, -1 when unknown), ``pixels`` (float32 HxWxC in [0, 1],
  the reconstruction target) and ``inputs`` (float32 HxWxC, the model input after normalization).
"""

ID = "id"
LABEL = "label"
IMAGE = "image"

LABEL_INDEX = "label_index"
PIXELS = "pixels"
INPUTS = "inputs"

RAW_FEATURES = (ID, LABEL, IMAGE)
TRANSFORMED_FEATURES = (ID, LABEL, LABEL_INDEX, PIXELS, INPUTS)

LABEL_VOCABULARY = "label_vocabulary"
UNKNOWN_LABEL = ""
UNKNOWN_LABEL_INDEX = -1
