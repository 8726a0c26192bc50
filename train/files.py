"""File sources (CSV, VOC, YOLO, COCO): in progress."""
