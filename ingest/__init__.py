"""The write path: readers -> batches -> encoder -> bulk, with rejects and resume."""
