"""Warm labs: pools of labs made before their students are known, claimed in a second.

- `records`: the pool tables (targets and unclaimed labs) in the state store.
- `split`: which setup steps can run before the student is known.
- `fill`: fill, drain and collect a pool.
- `claim`: hand a ready lab to a student (or bring one up cold), and refill behind.

Nothing is imported here: `teardown` reads `records` without loading the lifecycle.
"""
