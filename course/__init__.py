"""Authoring and instructor tooling for the course: ``python -m course build | check | bench | site``.

Learners never import this package; their notebooks import ``utils`` only. Modules, one job each:

- ``config``    the repository address, paths, markers and the lesson table (number -> slug);
- ``notebook``  reading, writing, stripping and tagging notebooks;
- ``stamp``     the generated badges and setup cell (template in ``setup_cell.py.txt``);
- ``lesson``    student versions: answers become stubs, hidden tests are dropped;
- ``readme``    the README's lesson table;
- ``build``     ``build`` and ``check`` over the whole course;
- ``execute``   running a notebook in a fresh kernel, with its environment and limits;
- ``bench``     the benchmark: seconds, peak memory and metrics at full settings;
- ``site``      the course website (Sphinx + myst-nb over the student notebooks, offline).
"""
