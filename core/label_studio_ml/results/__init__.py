"""Building results Label Studio accepts: the parsed label config (``label_config``), regions
and their validation (``regions``), brush RLE (``brush``), box and polygon geometry
(``geometry``) and the OCR region layout (``ocr``). Services import these to build predictions."""
