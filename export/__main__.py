"""Export one model to several formats and precisions with one verification table.

    python -m export --model runs/demo --formats tflite,onnx --quantize none,int8
"""

from export._cli import main_export as main

if __name__ == "__main__":
    raise SystemExit(main())
