"""What every entry point does after training.

- `evaluation.py`: the student and the teacher scored side by side on the same data;
- `latency.py`: parameter counts and latency;
- `model_card.py`: the Hub model card;
- `hub.py`: checks before training and the push after it;
- `export.py`: the student to ONNX and int8 ONNX, re-scored with onnxruntime;
- `report.py`: results, card, table and push, the last step of every entry point.
"""
