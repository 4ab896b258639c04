"""Building blocks of batch extraction, shared by :mod:`edgel3.parallel` (worker processes)
and :mod:`edgel3.distributed` (Ray): input lists and shards, portable model references,
and run planning (what is done, what to do). Use those two modules; see docs/scale.rst.
"""
