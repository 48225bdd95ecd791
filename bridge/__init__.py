"""dotbridge: a neural bi-encoder in front of OpenSearch."""
