"""The serve process: the instructor's dashboard and the students' seats (web and SSH)."""
