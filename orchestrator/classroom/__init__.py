"""Classroom mode: one lab per student of a roster, a gradebook, a live dashboard.

Built on the single-lab lifecycle (`orchestrator.lab`): a class is a roster bound to one
scenario, and each student's lab is an ordinary lab that the student drives with the usual
verbs. The class's own tables live in the same SQLite store (see `classroom.store`).
"""
