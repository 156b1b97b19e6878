"""The delivery side: encoding, batches, the client and its transport, the spool and its replay."""
