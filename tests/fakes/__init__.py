"""Local fake servers of the real video providers, following each public HTTP contract."""
