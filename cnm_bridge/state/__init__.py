"""The records pycni keeps and the store that keeps them; the boot id; the server's lock.
Imports nothing of pycni's but `errors`."""
