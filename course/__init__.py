"""Authoring and instructor tooling: ``python -m course build | check | bench | grade | result | classroom | site``.

Learners never import this package; their notebooks import ``utils`` only. Modules, one job each:

- ``config``    the repository address, paths, markers and the lesson table (number -> slug);
- ``notebook``  reading, writing, stripping and tagging notebooks;
- ``stamp``     the generated badges and setup cell (template in ``setup_cell.txt``);
- ``lesson``    student versions: answers become stubs, hidden tests are dropped;
- ``readme``    the README's lesson table;
- ``build``     ``build`` and ``check`` over the whole course;
- ``execute``   running a notebook in a fresh kernel, with its environment and limits;
- ``bench``     the benchmark: seconds, peak memory and metrics at full settings;
- ``nbgrader``  nbgrader's cell metadata in the solution notebooks (the build writes it);
- ``grade``     grading a class's notebooks from the checks' own records; ``gradebook`` its CSV,
                summary and feedback; ``classroom`` the GitHub Classroom workflow (docs/INSTRUCTORS.md).
- ``site``      the course website (Sphinx + myst-nb over the student notebooks, offline).
"""
