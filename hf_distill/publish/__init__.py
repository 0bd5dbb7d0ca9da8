"""What every entry point does after training.

- `evaluation.py`: the student and the teacher scored side by side on the same data;
- `latency.py`: parameter counts and latency;
- `model_card.py`: the Hub model card;
- `hub.py`: checks before training and the push after it.
"""
