"""From run records to the paper's tables: no torch is imported at load time.

loading.py reads records (or W&B) into one frame; convergence.py finds each run's convergence epoch
e; inference.py holds the intervals and tests; aggregate.py builds the cells of Tables 1-6;
consistency.py checks the paper against itself; paper.py reads the paper's own numbers (reference/);
columns.py lists each table's columns; report.py renders everything as Markdown, LaTeX and CSV
(formatting.py: how a cell prints); plots.py draws the figures.
"""
