"""streamrec: real-time personalised recommendations on Kafka + PyFlink + ONNX BERT."""

__version__ = "0.1.0"
