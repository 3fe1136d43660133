"""What a course needs on top of the library: self-checks for the exercises
(:mod:`~minigrad.teaching.selfcheck`) and the student edition of the book
(:mod:`~minigrad.teaching.edition`). Nothing in the library imports this package."""
