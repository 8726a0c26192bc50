"""benchmarks.input_pipeline: the generated JPEG set reads back through the csv source with
its boxes, and the report renders measured and failed cells."""

from __future__ import annotations

from benchmarks.input_pipeline import generate, markdown
from data.catalog import get_source


def test_generated_jpegs_read_back_with_their_boxes(tmp_path):
    labels = generate(tmp_path, 12)
    assert generate(tmp_path, 12) == labels  # complete: reused, not rewritten
    source = get_source("csv", data_dir=labels, split="all")
    assert len(source) == 12 and source.labels == ["none", "object"]
    for i in range(12):
        sample = source[i]
        assert sample.image.shape == (240, 320, 3) and sample.label == 1
        x1, y1, x2, y2 = sample.box
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 and (x2 - x1) * 320 >= 30


def test_report_tables_show_measured_and_failed_cells():
    results = {"command": "python -m benchmarks.input_pipeline --images 20",
               "machine": {"cpu": "AMD EPYC", "cores": 2, "python": "3.11.7", "tensorflow": "2.21.0"},
               "images": 20, "jpeg_size": "320x240", "image_size": 128, "batch_size": 32,
               "augment": "basic",
               "input": [{"pipeline": "tf", "threads": 2, "img_per_s": 2000.4, "img_per_cpu_s": 1100.0,
                          "cache_s": 3.21, "peak_rss_mb": 900.0},
                         {"pipeline": "python-jpeg", "threads": 1, "error": "exit 1: boom"}],
               "train": [{"strategy": "mirrored", "replicas": 2, "img_per_s": 61.0, "img_per_cpu_s": 40.0}]}
    text = markdown(results)
    assert "| tf | 2 | 2000 | 1100 | 3.2 | 900 |" in text
    assert "| python-jpeg | 1 | error: exit 1: boom | | | |" in text
    assert "| mirrored | 2 | 61 | 40 |" in text and "AMD EPYC, 2 cores" in text
