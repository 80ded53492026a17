"""The core: the API's data types, the error hierarchy, secrets (encryption, masking, scrubbing)
and small pure helpers. No I/O and no knowledge of the store, providers or sessions."""
