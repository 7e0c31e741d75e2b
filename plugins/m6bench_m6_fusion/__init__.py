"""m6-fusion: multimodal attention fusion with multi-task heads."""
