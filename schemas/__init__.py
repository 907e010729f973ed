"""Event contracts (Avro .avsc files), the schema store and the one codec built on fastavro."""
