"""Streaming feature ingestor: MSK (IAM auth) -> velocity features -> Feast push source."""
