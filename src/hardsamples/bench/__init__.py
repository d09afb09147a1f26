"""`make bench`: the training loop's speed against itself and against the authors' pipeline.

speed.py measures and reports (conf/bench.yaml); authors.py rebuilds the authors' data pipeline and
training step, the baseline of part 3.
"""
